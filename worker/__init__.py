"""Worker side of callrail-sync: CallRail client, Mongo store, Celery app, rate limiting."""
