"""The library the service stands on: jobs, errors, settings, the Mongo stores, the CallRail
client and its vocabulary, the request budget, locks, events, URL policy and signatures.

Nothing here imports `tasks`, `worker` or `api_shim`; the command line is `callrail_sync.cli`.
"""
