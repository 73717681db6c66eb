"""Stand-ins for `python -m servers <app>` and `python -m locust` that fail as real ones can.

`tests/test_loadtests_faults.py` runs the orchestrator with an interpreter wrapper that starts
this file instead of those two modules; the server's app name picks the fault:

* `sync`: a server that answers `/ready`, starts a helper process (as a server's worker or
  reloader would) and crashes 1 s later with a traceback;
* `async`: a server that exits at start (an import error);
* `blocking`: a server that never answers (it never listens).

The Locust stand-in waits `LOCUST_S` seconds and exits 0 (killed earlier if the cell ends).
"""

import http.server
import os
import subprocess
import sys
import threading
import time

CRASH_AFTER_S = 1.0
LOCUST_S = 3.0
# The last line each failing server writes: what the cell's reason must quote.
LAST_LINES = {
    "sync": "RuntimeError: worker crashed mid-cell [bold]not markup[/]",
    "async": "ImportError: cannot import name 'app' from 'servers.async_app'",
    "blocking": "waiting for the database lock",
}


class Ready(http.server.BaseHTTPRequestHandler):
    """200 for `/ready` and `/health`, 404 for anything else."""

    def do_GET(self) -> None:
        ok = self.path in ("/ready", "/health")
        self.send_response(200 if ok else 404)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def say(line: str) -> None:
    print(line, flush=True)


def crash_mid_cell(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Same process group: it outlives the crash unless the orchestrator kills the group.
    subprocess.Popen(["sleep", "300"])
    say(f"INFO: serving on 127.0.0.1:{port}")
    for i in range(1, 13):
        say(f"INFO: request {i} done")
    time.sleep(CRASH_AFTER_S)
    say("Traceback (most recent call last):")
    say('  File "servers/sync_app.py", line 1, in handler')
    say(LAST_LINES["sync"])
    os._exit(3)


def exit_at_start() -> None:
    say("Traceback (most recent call last):")
    say('  File "servers/__main__.py", line 1, in <module>')
    say(LAST_LINES["async"])
    raise SystemExit(1)


def never_ready() -> None:
    say(LAST_LINES["blocking"])
    time.sleep(300)


def main(argv: list[str]) -> None:
    """`-m servers <app> --host H --port N ...` or `-m locust ...`."""
    if argv[1] == "locust":
        time.sleep(LOCUST_S)
        return
    app, port = argv[2], int(argv[argv.index("--port") + 1])
    if app == "sync":
        crash_mid_cell(port)
    elif app == "async":
        exit_at_start()
    else:
        never_ready()


if __name__ == "__main__":
    main(sys.argv[1:])
