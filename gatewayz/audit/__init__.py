"""The audit log: append-only and hash-chained, so tampering is detectable."""
