"""Downtime incidents: opened when a provider or one of its models degrades, resolved on recovery or by an admin."""
