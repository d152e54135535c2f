"""GatewayZ: one URL and one key for every model, with failover and exact prepaid billing."""

__version__ = "0.1.0"
