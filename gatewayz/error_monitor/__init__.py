"""Failed inference requests and unexpected exceptions: recent and critical errors, and recurring patterns."""
