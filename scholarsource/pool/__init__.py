"""The job pool: the process the master forks, its dispatcher, its slots and its wake-ups."""

# After a TERM the master waits the grace period and this much more for the pool, then KILLs.
SHUTDOWN_MARGIN = 5.0
