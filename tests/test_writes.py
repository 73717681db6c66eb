"""Concurrent `POST /items` against a real server of each variant loses nothing: every 2xx answer
is exactly one row, every new row answered 2xx, and no write fails with "database is locked"
(WAL, SQLite's busy timeout; a 503 in the envelope, not a 500, if the wait ever ran out).
The same on PostgreSQL, with every driver each style can run."""

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PG_ARMS
from tests.live import live_proxy

pytestmark = pytest.mark.integration

USERS, SECONDS, SEED = 50, 2.0, 100


ARMS = [pytest.param(v, "sqlite", id=f"{v}-sqlite") for v in ("sync", "async", "blocking")] + [
    pytest.param(v, driver, id=f"{v}-postgres-{driver}") for v, driver in PG_ARMS
]


@pytest.mark.parametrize(("variant", "db"), ARMS)
def test_concurrent_writes_are_each_one_row(
    variant: str, db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    answers: list[tuple[str, int, dict]] = []
    failures: list[str] = []
    lock = threading.Lock()
    env = {}
    if db != "sqlite":
        env = {"LAB_DB_URL": request.getfixturevalue("pg_url"), "LAB_DB_ASYNC_DRIVER": db}
    with live_proxy(variant, "http://127.0.0.1:9", tmp_path, env) as url:
        deadline = time.monotonic() + SECONDS

        def user(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                i = 0
                while time.monotonic() < deadline:
                    name = f"user{n}-{i}"
                    i += 1
                    try:
                        response = client.post("/items", json={"name": name, "price": n})
                    except httpx.HTTPError as exc:  # the outcome would be unknown
                        with lock:
                            failures.append(f"{name}: {exc!r}")
                        continue
                    with lock:
                        answers.append((name, response.status_code, response.json()))

        threads = [threading.Thread(target=user, args=(n,)) for n in range(USERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stored = stored_rows(tmp_path, env.get("LAB_DB_URL"))
    statuses = Counter(status for _, status, _ in answers)
    answered = {(body["id"], name) for name, status, body in answers if status == 201}
    refused = {name for name, status, _ in answers if status != 201}
    print(f"\nwrites {variant}/{db}: {dict(statuses)} answers, {len(stored)} new rows")
    assert failures == []
    assert set(statuses) <= {201, 503}, statuses  # no 500, "database is locked" or other
    assert all(body["error"]["code"] in ("db_locked", "db_pool_timeout")
               for _, status, body in answers if status == 503)  # fmt: skip
    # Rows to compare; how many is a speed (a loaded CI machine wrote 49 once): for benchmarks.
    assert statuses[201] > 0
    assert answered == stored  # each 2xx is one row and each new row was a 2xx
    assert len(answered) == statuses[201]  # no two answers share a row
    assert not refused & {name for _, name in stored}  # a 503 stored nothing


def stored_rows(tmp_path: Path, pg_url: str | None) -> set[tuple[int, str]]:
    """The rows written after the seed, read straight from the database (server still up)."""
    if pg_url:
        with psycopg.connect(pg_url) as conn:
            query = "SELECT id, name FROM items WHERE id > %s"
            return set(conn.execute(query, (SEED,)).fetchall())
    with sqlite3.connect(tmp_path / "items.sqlite3") as conn:
        return set(conn.execute("SELECT id, name FROM items WHERE id > ?", (SEED,)).fetchall())
