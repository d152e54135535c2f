"""API keys: generation, encryption at rest, HMAC lookup, the authentication cache."""
