"""HTTP surface: middleware, error rendering, and the inference endpoints (raw ASGI on the hot path)."""
