"""Celery tasks: syncs of accounts and companies into snapshots, webhook changes, the beat
dispatcher. Every task takes one argument, a job id; the job document holds the rest."""
