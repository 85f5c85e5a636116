"""Optional glue for other frameworks (imported on demand)."""
