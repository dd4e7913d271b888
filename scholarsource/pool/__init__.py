"""The job pool: the process the master forks, its dispatcher, its slots and its wake-ups."""
