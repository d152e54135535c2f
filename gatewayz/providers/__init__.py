"""Upstream providers: their specs (data), the HTTP engine that applies them, and SSE framing."""
