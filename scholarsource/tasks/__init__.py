"""Task registry, the task context and the built-in tasks."""
