"""`LAB_CANCEL_ON_DISCONNECT` (servers/disconnect.py) in pieces, without a server: the pitfalls
the middleware must keep out, the departure that ends a worker thread's upstream read, the sync
client's wrapped network backend, and that the arm is on when set and off by default. The real
servers' behaviour is in tests/test_disconnects.py."""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient

from servers import disconnect
from servers.disconnect import CancelOnDisconnectMiddleware, DepartingBackend, Departure
from tests.conftest import VARIANTS
from tests.test_arms import arm_app

Message = dict[str, Any]


class Client:
    """An ASGI server's side of one request: the body it hands over, and when the client
    leaves (`leave`); after the response ends every `receive()` is `http.disconnect`, as
    uvicorn answers (tests/test_bad_input.py measures it)."""

    def __init__(self, body: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        self.body = [
            {"type": "http.request", "body": chunk, "more_body": i < len(body) - 1}
            for i, chunk in enumerate(body)
        ]
        self.left = anyio.Event()
        self.ended = anyio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.body:
            return self.body.pop(0)
        with anyio.move_on_after(5):
            async with anyio.create_task_group() as tasks:
                for event in (self.left, self.ended):
                    tasks.start_soon(self._first, event, tasks.cancel_scope)
        return {"type": "http.disconnect"}

    @staticmethod
    async def _first(event: anyio.Event, scope: anyio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended.set()


def posting(body: list[bytes]) -> Client:
    return Client(body, [(b"content-length", str(sum(map(len, body))).encode())])


def test_the_app_reads_its_whole_body_and_later_receives_are_answered_for_it() -> None:
    """The watcher starts only once the body has been read (Kludex/starlette#2215): the app
    gets every chunk; its later `receive()` waits and says `http.disconnect` when the client
    leaves, and the app is cancelled then."""
    client = posting([b"ab", b"cd", b"ef"])
    seen: list[Message] = []
    finished: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while not seen or seen[-1].get("more_body"):
                seen.append(await receive())
            seen.append(await receive())  # blocks until the client leaves
            await anyio.sleep(5)
            finished.append("ran to its end")
        finally:
            finished.append("finally")

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                CancelOnDisconnectMiddleware(app), client.scope, client.receive, client.send
            )
            await anyio.sleep(0.05)
            client.left.set()

    started = time.monotonic()
    anyio.run(main)
    assert b"".join(m.get("body", b"") for m in seen) == b"abcdef"
    assert seen[-1] == {"type": "http.disconnect"}
    assert finished == ["finally"] and time.monotonic() - started < 1


def test_a_bodiless_request_is_watched_at_once_and_its_empty_body_kept_for_the_app() -> None:
    client = Client([b""], [])
    seen: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(0.1)  # the watcher has read the empty body meanwhile
        seen.append(await receive())
        await anyio.sleep(5)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                CancelOnDisconnectMiddleware(app), client.scope, client.receive, client.send
            )
            await anyio.sleep(0.2)
            client.left.set()

    started = time.monotonic()
    anyio.run(main)
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}]
    assert time.monotonic() - started < 1  # cancelled when the client left


def test_the_disconnect_after_the_response_ended_cancels_nothing() -> None:
    """uvicorn answers `receive()` with `http.disconnect` once the response has ended: that is
    no departure, so work after the response (a background task) runs on (Kludex/starlette#1438)."""
    client = posting([b"{}"])
    done: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await anyio.sleep(0.2)  # the watcher has heard the disconnect meanwhile
        done.append("after the response")

    anyio.run(CancelOnDisconnectMiddleware(app), client.scope, client.receive, client.send)
    assert done == ["after the response"]
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


def test_an_exception_of_the_app_leaves_as_itself() -> None:
    client = posting([b"{}"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise LookupError("the app's own")

    with pytest.raises(LookupError, match="the app's own"):
        anyio.run(CancelOnDisconnectMiddleware(app), client.scope, client.receive, client.send)


def test_a_departure_ends_a_read_blocked_in_another_thread() -> None:
    """What the `def` style gets: a worker thread blocked in `recv` returns at once when the
    client leaves; a socket used after the departure is shut before the call; one no longer in
    use is never touched."""
    departure = Departure()
    ours, upstream = socket.socketpair()
    idle, idle_peer = socket.socketpair()
    got: list[bytes] = []

    def worker() -> None:
        with departure.using(ours):
            got.append(ours.recv(10))

    with departure.using(idle):
        pass  # used and let go: back in its pool
    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert departure.leave() == 1
    thread.join(2)
    assert got == [b""] and time.monotonic() - started < 0.5
    idle_peer.sendall(b"x")
    assert idle.recv(1) == b"x"  # untouched
    late, late_peer = socket.socketpair()
    with departure.using(late):
        assert late.recv(10) == b""  # shut before the read
    for sock in (ours, upstream, idle, idle_peer, late, late_peer):
        sock.close()


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_install_wraps_a_sync_clients_network_backend_once(module: Any) -> None:
    with module.Client() as client:
        assert disconnect.install(client)
        assert isinstance(client._transport._pool._network_backend, DepartingBackend)
        assert not disconnect.install(client)  # already wrapped
    with module.Client(transport=module.MockTransport(lambda r: module.Response(200))) as mocked:
        assert not disconnect.install(mocked)  # no pool, no socket


def test_install_leaves_an_async_client_alone() -> None:
    client = httpx.AsyncClient()
    assert not disconnect.install(client)
    assert not isinstance(client._transport._pool._network_backend, DepartingBackend)


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        "LAB_DB_PATH": str(tmp_path / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "5",
        "LAB_UPSTREAM_URL": "http://127.0.0.1:9/v1",
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_arm_is_on_only_when_set(variant: str, app_env: dict[str, str]) -> None:
    for cancel in (False, True):
        env = {**app_env, "LAB_CANCEL_ON_DISCONNECT": str(cancel).lower()}
        with arm_app(variant, env) as app, TestClient(app) as client:
            middleware = [m.cls for m in app.user_middleware]
            assert (CancelOnDisconnectMiddleware in middleware) is cancel
            backend = app.state.http._transport._pool._network_backend
            # Only a sync client needs its reads ended from outside its thread.
            assert isinstance(backend, DepartingBackend) is (cancel and variant != "async")
            assert client.get("/items/2").json()["id"] == 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_metrics_count_the_statements_sent_to_the_database(
    variant: str, app_env: dict[str, str]
) -> None:
    def counted(client: TestClient) -> float | None:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("lab_db_statements_total "):
                return float(line.split()[1])
        return None

    with arm_app(variant, app_env) as app, TestClient(app) as client:
        before = counted(client)
        assert client.get("/items/2").status_code == 200
        assert client.get("/items?limit=3").status_code == 200
        assert before is not None and counted(client) == before + 2
    with arm_app(variant, {**app_env, "LAB_OBSERVE": "false"}) as app, TestClient(app) as client:
        assert counted(client) is None  # the observer off counts nothing
