"""`sync-async-lab probe` end to end: real servers, real Locust, the command's own exit codes.

The lab's three apps must get the lab's own verdicts from the probe, which has never been told
about them: `servers.blocking_app` blocks the loop at its sync upstream call, `servers.sync_app`'s
`/items/{item_id}` stalls at 200 users, `servers.async_app`'s `/hello` has no finding. Bad input
ends with one line on stderr and exit code 2.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import probe_apps
from tests.live import live_mock

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
# The smallest probe that still runs the lab's rules: light and heavy load and the flip arm.
QUICK = ["--quick", "--users", "10,200"]


def probe(
    out: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run `python -m probe probe ...` from the repo root, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "probe", "probe", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def routes(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "routes.csv") as f:
        return {f"{r['method']} {r['path']}": r for r in csv.DictReader(f)}


def source_line(file: str, text: str) -> int:
    """The line of `file` (in the repo) holding `text`."""
    for number, line in enumerate((REPO / file).read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {file}")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["tests.nowhere:app"], 'Could not import module "tests.nowhere"'),
        (["tests.probe_apps:NOT_AN_APP"], "not an ASGI app"),
        (
            ["probe_broken:app", "--app-dir", "tests/data"],
            "RuntimeError: cannot reach the database",
        ),
        (["tests.probe_apps:faulty", "--routes", "/nowhere"], "--routes '/nowhere' names no route"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], says: str) -> None:
    done = probe(tmp_path / "run", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_a_requests_file_with_an_unknown_route_is_exit_code_2(tmp_path: Path) -> None:
    requests = tmp_path / "requests.toml"
    requests.write_text('[[request]]\nmethod = "POST"\npath = "/fine"\n')
    done = probe(tmp_path / "run", "tests.probe_apps:faulty", "--requests", str(requests))
    assert done.returncode == 2
    assert "request 1 (POST /fine) matches no route of the app" in done.stderr


def test_a_route_answering_errors_is_reported_and_the_others_are_probed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = probe(
        out, "tests.probe_apps:faulty", "--routes", "/missing,/fine", "--quick", "--users", "10"
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    assert "GET /missing answered 404 to every probe request (/missing)" in done.stdout
    assert "nothing here, ever" in done.stdout
    found = routes(out)
    assert found["GET /missing"]["finding"] == "not_probed"
    assert "answered 404" in found["GET /missing"]["advice"]
    assert found["GET /fine"]["finding"] == "ok"
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_an_app_whose_every_route_answers_errors_stops_before_measuring(tmp_path: Path) -> None:
    # FastAPI's own docs app (bigger_applications) did this: a required token on every route.
    done = probe(tmp_path / "run", "tests.probe_apps:faulty", "--routes", "/missing", "--quick")
    assert done.returncode == 2
    assert "every route answered errors to its probe requests" in done.stderr
    assert "calibration" not in done.stdout
    assert not (tmp_path / "run" / "summary.csv").exists()


def test_the_blocking_app_blocks_the_loop_at_its_sync_upstream_call(tmp_path: Path) -> None:
    requests = tmp_path / "chat.toml"
    requests.write_text(
        '[[request]]\nmethod = "POST"\npath = "/v1/chat/completions"\n'
        'json = { model = "mock", max_tokens = 1, '
        'messages = [{ role = "user", content = "hi" }] }\n'
    )
    with live_mock(tmp_path) as upstream:
        out = tmp_path / "run"
        done = probe(
            out,
            "servers.blocking_app:app",
            "--requests",
            str(requests),
            "--routes",
            "POST /v1/chat/completions",
            *QUICK,
            env={"LAB_UPSTREAM_URL": f"{upstream}/v1", "LAB_DB_PATH": str(tmp_path / "b.sqlite3")},
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    chat = routes(out)["POST /v1/chat/completions"]
    assert chat["finding"] == "blocks_loop", chat
    line = source_line("servers/blocking_app.py", "response = client.send(upstream, stream=True)")
    assert chat["site"] == f"servers/blocking_app.py:{line}"
    assert "Client.send" in chat["call"]


def test_the_sync_apps_item_route_stalls_at_200_users(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = probe(
        out,
        "servers.sync_app:app",
        "--routes",
        "/items/{item_id}",
        *QUICK,
        env={"LAB_DB_PATH": str(tmp_path / "s.sqlite3")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    item = routes(out)["GET /items/{item_id}"]
    assert item["finding"] == "stalls", item
    assert (
        item["site"]
        == f"servers/sync_app.py:{source_line('servers/sync_app.py', 'def get_session(')}"
    )
    assert "at 200 users" in item["evidence"] and "DB connection" in item["evidence"]


def test_the_async_apps_hello_has_no_finding(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = probe(
        out,
        "servers.async_app:app",
        "--routes",
        "/hello",
        *QUICK,
        env={"LAB_DB_PATH": str(tmp_path / "a.sqlite3")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    hello = routes(out)["GET /hello"]
    assert hello["finding"] == "ok", hello
    assert hello["site"] == ""


def test_a_sleeping_route_is_found_at_its_line_and_an_awaiting_one_is_not(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = probe(
        out, "tests.probe_apps:faulty", "--routes", "/sleeps,/awaits", "--quick", "--users", "10"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    found = routes(out)
    assert found["GET /sleeps"]["finding"] == "blocks_loop"
    assert found["GET /sleeps"]["site"] == f"tests/probe_apps.py:{probe_apps.line('sleeps')}"
    assert found["GET /sleeps"]["call"] == "time.sleep"
    assert found["GET /awaits"]["finding"] == "ok"
    assert found["GET /awaits"]["site"] == ""
