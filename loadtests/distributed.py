"""Load from several hosts: a Locust master here, workers on each load host (Locust's own
distributed mode), reached by a command prefix.

`--locust-hosts a,b` with `--host-prefix "ssh {host}"` (real machines: the same checkout and
venv at the same path on each, and the machines' clocks in sync, since a row's place in the
window is its start time) or `"ip netns exec {host}"` (the tests: namespaces on one machine).
Each host runs `--workers-per-host` workers; they connect to the master at `--master-address`
(how the hosts reach this machine) on a free port. The workers send their rows to the master
(loadtests/locustfiles/remote.py), so a host needs no shared disk; each worker's own CPU and its
host's come with them, and a cell is invalid when the load side saturated (`saturated`): a
worker its core, a load host of its own all its CPUs, or the master here its core. A host on
this machine (network namespaces share the kernel: the same boot id) shares its CPUs with the
server, so its busy share is not the load's and only its workers' own CPU counts.

Pure: command lines and the CPU arithmetic; loadtests.measure starts the processes.
"""

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import LOADGEN_MAX_PCT
from loadtests.process import mean_pct

DEFAULT_PREFIX = "ssh {host}"
# Each worker's host, as the orchestrator names it, in the worker's environment.
HOST_ENV = "LAB_LOAD_HOST"


@dataclass(frozen=True)
class LoadHosts:
    """Where the Locust workers of a run go, and how the orchestrator reaches each host."""

    hosts: tuple[str, ...]
    prefix: str = DEFAULT_PREFIX
    workers_per_host: int = 1
    # The address the load hosts reach the master at (this machine as they see it).
    master_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.hosts or any(not h.strip() for h in self.hosts):
            raise ValueError("--locust-hosts: name at least one host, comma-separated")
        if "{host}" not in self.prefix:
            raise ValueError(f"--host-prefix {self.prefix!r} has no {{host}} to fill in")
        if self.workers_per_host < 1:
            raise ValueError("--workers-per-host must be >= 1")

    @property
    def workers(self) -> int:
        """Workers in all."""
        return len(self.hosts) * self.workers_per_host

    def placement(self) -> list[str]:
        """The host of each worker, in start order."""
        return [h for h in self.hosts for _ in range(self.workers_per_host)]

    def worker_command(
        self, host: str, python: str, locustfile: str, user_classes: Sequence[str], port: int
    ) -> list[str]:
        """One worker's command line on `host` (the lab's options come from the master)."""
        return [
            *shlex.split(self.prefix.format(host=host)),
            "env",
            f"{HOST_ENV}={host}",
            python,
            "-m",
            "locust",
            "-f",
            locustfile,
            *user_classes,
            "--worker",
            "--master-host",
            self.master_address,
            "--master-port",
            str(port),
        ]

    def to_dict(self) -> dict[str, Any]:
        """What manifest.json records of the load side."""
        return {
            "hosts": list(self.hosts),
            "prefix": self.prefix,
            "workers_per_host": self.workers_per_host,
            "master_address": self.master_address,
        }


def master_options(workers: int, port: int) -> list[str]:
    """The master's own flags: wait for every worker, then drive them; the lab's collection."""
    return [
        "--master",
        "--expect-workers",
        str(workers),
        "--master-bind-host",
        "0.0.0.0",
        "--master-bind-port",
        str(port),
        # Locust's own bound on waiting for the workers to connect.
        "--expect-workers-max-wait",
        "60",
        "--lab-workers",
        str(workers),
    ]


def boot_id() -> str | None:
    """This kernel's boot id: the same in every network namespace of one machine, different on
    another machine, so the master can tell a load host that shares its machine (and its CPUs).
    The workers report theirs (loadtests/locustfiles/remote.py); the orchestrator reads its own."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def worker_cpu(
    workers: Sequence[dict[str, Any]], start: float, end: float, here: str | None = None
) -> list[dict[str, Any]]:
    """Each worker's mean CPU (its own process, % of one core) and its host's busy % over the
    window, from the samples it sent (none: unknown), and whether its host is this machine
    (`here`: this machine's boot id; a worker that reported none is taken as elsewhere)."""
    out = []
    for worker in workers:
        samples = worker.get("cpu_samples") or []
        pct = mean_pct([(t, c) for t, c, _ in samples], start, end)
        host = None
        if pct is not None:
            pct = round(pct, 1)
            inside = [s for s in samples if start <= s[0] <= end]
            host = round(sum(s[2] for s in inside[1:]) / (len(inside) - 1), 1)
        shared = here is not None and worker.get("boot_id") == here
        out.append(
            {"host": worker.get("host"), "index": worker.get("worker_index"), "cpu_pct": pct,
             "host_cpu_pct": host, "host_is_here": shared, "rows": worker.get("rows")}
        )  # fmt: skip
    return out


def saturated(cpu: Sequence[dict[str, Any]], master_pct: float | None = None) -> str:
    """Why a distributed cell is invalid on its load side ("" when nothing of it saturated): a
    worker over LOADGEN_MAX_PCT of its core, a load host of its own (not this machine) over
    LOADGEN_MAX_PCT of all its CPUs (its workers together, or whatever else runs there), or the
    Locust master here over LOADGEN_MAX_PCT of its core (it gathers every worker's rows)."""
    reasons = [
        f"load host {c['host']} (worker {c['index']}) at {c['cpu_pct']:.0f}% of its core"
        for c in cpu
        if c["cpu_pct"] is not None and c["cpu_pct"] > LOADGEN_MAX_PCT
    ]
    hosts: dict[str, float] = {}
    for c in cpu:
        busy = c.get("host_cpu_pct")
        if busy is not None and not c.get("host_is_here") and busy > LOADGEN_MAX_PCT:
            hosts[str(c["host"])] = max(busy, hosts.get(str(c["host"]), 0.0))
    reasons += [f"load host {h} at {busy:.0f}% of its CPUs" for h, busy in hosts.items()]
    if master_pct is not None and master_pct > LOADGEN_MAX_PCT:
        reasons.append(f"Locust master at {master_pct:.0f}% of its core")
    return "; ".join(reasons)


def missing_workers(meta: dict[str, Any], placement: Sequence[str]) -> str:
    """A failed cell's reason when a load worker's rows are not in ("" when every one's are).

    By host: the placement says how many workers each host ran; the rows that came say from
    where. A worker lost before the master's end of the window (Locust itself stops a test
    whose workers went missing) is found the same way as one the master waited for in vain.
    """
    due = Counter(placement)
    short = due - Counter(str(w.get("host")) for w in meta.get("workers") or [])
    if not short:
        return ""
    hosts = ", ".join(f"{h} ({short[h]} of {due[h]})" for h in due if short[h])
    return (
        f"{sum(short.values())} of {len(placement)} load workers sent no rows, their requests "
        f"unaccounted for: {hosts} stopped mid-cell (see locust.log and the worker logs)"
    )


def add_cli_args(parser: Any) -> None:
    """The load-host options of `python -m loadtests` and `sync-async-lab probe`."""
    group = parser.add_argument_group("load from other hosts (Locust's distributed mode)")
    group.add_argument("--locust-hosts", help="comma-separated load hosts, one worker each")
    group.add_argument(
        "--host-prefix",
        default=DEFAULT_PREFIX,
        help="how a command reaches a host, {host} filled in (default: %(default)s; tests: "
        "'ip netns exec {host}')",
    )
    group.add_argument("--workers-per-host", type=int, default=1, help="Locust workers per host")
    group.add_argument(
        "--master-address",
        default="127.0.0.1",
        help="the address the load hosts reach this machine at (the Locust master)",
    )


def from_cli_args(args: Any) -> LoadHosts | None:
    """The LoadHosts the options name (None without --locust-hosts); ValueError when bad."""
    if not args.locust_hosts:
        return None
    hosts = tuple(h.strip() for h in args.locust_hosts.split(",") if h.strip())
    return LoadHosts(hosts, args.host_prefix, args.workers_per_host, args.master_address)
