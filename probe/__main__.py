"""`python -m probe ...` = `sync-async-lab ...`."""

import sys

from probe.cli import main

sys.exit(main())
