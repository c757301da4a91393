"""The shim's routes, one module per part of the dashboard contract."""
