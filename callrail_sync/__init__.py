"""The `callrail-sync` command: serve, simulator, token, sync, jobs, keys."""
