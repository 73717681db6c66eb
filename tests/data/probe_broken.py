"""A module that raises while it is imported (the probe reports it, exit 2)."""

raise RuntimeError("cannot reach the database at import time")
