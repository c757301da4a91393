"""`python -m callrail_sync.cli`: the same command as `callrail-sync`."""

import sys

from callrail_sync.cli.main import main

sys.exit(main())
