"""The lab's own PostgreSQL (loadtests/postgres.py) and the apps on it.

The cluster starts from the pip-installed binaries, answers on 127.0.0.1, and leaves nothing
behind: not when the block ends, not when the process that started it is SIGKILLed. Each app
style with each driver serves the waiting query, which really waits in the database.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from loadtests.postgres import LAB_CLUSTER, resolve, run_postgres
from loadtests.process import ServerError
from tests.conftest import PG_ARMS
from tests.live import live_proxy, wait_for

pytestmark = pytest.mark.integration

WAIT_MS = 600


def postgres_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_cluster_serves_then_leaves_nothing() -> None:
    with run_postgres() as cluster:
        with psycopg.connect(cluster.url) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("300",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.info.host == "127.0.0.1"
        children = psutil.Process(cluster.pid).children(recursive=True)
        home = cluster.log_path.parent
    assert not postgres_alive(cluster.pid)
    assert not any(postgres_alive(child.pid) for child in children)
    assert not home.exists()


CHILD = """
import sys, time
from loadtests.postgres import run_postgres
with run_postgres() as cluster:
    print(cluster.pid, cluster.log_path.parent, flush=True)
    time.sleep(60)
"""


def test_a_killed_owner_leaves_no_postgres_running() -> None:
    """SIGKILL runs no clean-up: postgres must notice its parent died and quit by itself."""
    owner = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert owner.stdout is not None
        pid_text, home = owner.stdout.readline().split()
        pid = int(pid_text)
        assert postgres_alive(pid)
        children = psutil.Process(pid).children(recursive=True)
        assert children  # postgres's own helpers (checkpointer, walwriter, ...)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert wait_for(lambda: not postgres_alive(pid), 10) is not None
        gone = [child.pid for child in children]
        assert wait_for(lambda: not any(postgres_alive(c) for c in gone), 10) is not None
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()
    shutil.rmtree(home, ignore_errors=True)  # SIGKILL ran no clean-up


def test_lab_placeholder_needs_a_running_cluster() -> None:
    assert resolve({"db_url": LAB_CLUSTER, "x": 1}, "postgresql://h/db") == {
        "db_url": "postgresql://h/db",
        "x": 1,
    }
    assert resolve({"db_url": ""}, None) == {"db_url": ""}
    with pytest.raises(ServerError, match="no PostgreSQL cluster"):
        resolve({"db_url": LAB_CLUSTER}, None)


SLEEPING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE state = 'active' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
)


@pytest.mark.parametrize(("variant", "driver"), PG_ARMS)
def test_the_waiting_query_waits_in_the_database(
    variant: str, driver: str, pg_url: str, tmp_path: Path
) -> None:
    """`?wait_ms=` makes the item's query wait in PostgreSQL: while the request is under way, a
    backend is seen running `pg_sleep`; the answer is the plain item, after the wait."""
    env = {"LAB_DB_URL": pg_url, "LAB_DB_ASYNC_DRIVER": driver}
    with live_proxy(variant, "http://127.0.0.1:9", tmp_path, env) as url:
        assert httpx.get(f"{url}/items/7", timeout=10).status_code == 200  # connected, warm
        with psycopg.connect(pg_url, autocommit=True) as conn, ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            answer = pool.submit(
                httpx.get, f"{url}/items/7", params={"wait_ms": WAIT_MS}, timeout=10
            )
            seen = False

            def sleeping() -> bool:
                nonlocal seen
                seen = seen or conn.execute(SLEEPING).fetchone() == (1,)
                return seen or answer.done()

            wait_for(sleeping, 5)
            waited = answer.result()
            took = time.monotonic() - start
    assert seen, "no backend ran pg_sleep while the request waited"
    assert waited.status_code == 200
    assert waited.json() == {**waited.json(), "id": 7} and "waited" not in waited.json()
    assert took >= WAIT_MS / 1000
