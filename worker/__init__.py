"""The Celery worker process: the app (`celery -A worker.app worker|beat|flower`), its signals
and warm shutdown. What each job does lives in `tasks/`; the library in `callrail_sync/`."""
