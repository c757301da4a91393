"""CallRail API v3: HTTP client, models, listing records, page walker. HTTP only; no storage."""
