"""User accounts: creation (with opening credits and a first key), listing."""
