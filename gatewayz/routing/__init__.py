"""Routing: which provider serves a request, in what order, and which ones to avoid (circuit breakers)."""
