"""What every cell of a run shares: the output folder, pinning, the run's own services."""

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.distributed import LoadHosts
from loadtests.process import Pinning
from loadtests.scenarios import SCENARIOS, Scenario

# How long the orchestrator waits for a fresh server's /ready before the cell fails.
READY_TIMEOUT_S = 30.0


@dataclass
class RunContext:
    """What every cell of a run shares (the run's services fill in their address while up)."""

    out: Path
    pinning: Pinning
    python: str = sys.executable
    upstream_url: str | None = None
    upstream_pid: int | None = None
    # The run's own PostgreSQL cluster (`db_url = "lab"` cells), while it runs.
    db_url: str | None = None
    db_pid: int | None = None
    target: str | None = None
    locust_processes: int = 1
    # Locust workers on other hosts (None: Locust runs here, on the load cores).
    load_hosts: LoadHosts | None = None
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    ready_timeout_s: float = READY_TIMEOUT_S
    # The scenarios cells may name: the lab's own, plus any a caller adds (the probe's routes).
    scenarios: dict[str, Scenario] = field(default_factory=lambda: dict(SCENARIOS))
