"""An app whose own dependency is not installed (the probe says how to install it, exit 2)."""

import lab_probe_no_such_package  # noqa: F401

app = None
