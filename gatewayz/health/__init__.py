"""Health: liveness that always answers 200, with the state of each dependency in the body."""
