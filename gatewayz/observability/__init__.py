"""Observability: Prometheus metrics (`observability.metrics`) and structured logs (`observability.logging`)."""
