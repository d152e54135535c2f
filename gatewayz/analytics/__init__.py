"""Customer usage analytics over usage_records: stats, the activity log, per-key usage, export, latency, retention."""
