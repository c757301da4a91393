"""CallRail API v3: HTTP client, response models and the page walker. HTTP only; no storage."""
