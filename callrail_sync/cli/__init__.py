"""The `callrail-sync` command: serve, stack, simulator, token, sync, jobs, keys, status."""

from callrail_sync.cli.main import main

__all__ = ["main"]
