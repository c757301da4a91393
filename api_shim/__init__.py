"""The HTTP shim: authenticates the dashboard (JWT), validates, queues jobs, serves snapshots.
It never calls CallRail: anything that needs CallRail becomes a job the frontend polls."""
