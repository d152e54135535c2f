"""Rate limits: GCRA in memory, or atomic in Redis shared by every worker and instance."""
