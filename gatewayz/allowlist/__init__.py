"""IP allowlists set by admins: global or per user, enforced on inference from an in-memory snapshot."""
