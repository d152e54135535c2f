"""Stripe payments: credit packages, subscriptions, and the signed webhook that applies their events."""
