"""Exit codes of `scholarsource` and its pool process; systemd and CI read them, so they are API."""

EXIT_OK = 0  # clean stop
EXIT_FAILURE = 1  # a client command failed, or the pool crashed (the master respawns it)
EXIT_CONFIG = 2  # invalid configuration or command-line usage
EXIT_DATA_DIR_IN_USE = 4  # a server holds the data directory's lock (serve, migrate-to)
EXIT_POOL_BOOT = 5  # the pool cannot start (task modules fail to import): do not respawn
EXIT_UNHEALTHY = 6  # `scholarsource doctor` found a check that FAILs
