"""RQ entry points: thin functions that take primitive ids, open their own session and commit."""
