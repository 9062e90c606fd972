"""Region waves, health gates and rollback: pure decisions (no I/O)."""
