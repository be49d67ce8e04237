"""From queued jobs to stored, catalogued images."""
