"""The probe's parts, in process: the target, the inventory, request generation, the arms and the
loop sampler (no Locust; tests/test_probe.py runs the whole command)."""

import asyncio
import importlib
import json
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from analysis.judge.probe import dependency_text
from probe import arms
from probe.inventory import ASYNC_DEF, DEF, inventory, style_of
from probe.plan import QUICK, Settings, flip_applies, ladder, route_cells, yield_dependencies
from probe.requests import (
    ProbeRequest,
    RequestsFileError,
    parse_header,
    plan_requests,
    select_routes,
)
from probe.target import Target, TargetError, load
from probe.watch import LoopWatch
from tests import probe_apps

REPO = Path(__file__).resolve().parent.parent


def routes_of(app: FastAPI, spec: str = "tests.probe_apps:app") -> dict:
    return inventory(Target(spec, REPO), app)


def by_path(doc: dict) -> dict[str, dict]:
    return {f"{r['method']} {r['path']}": r for r in doc["routes"]}


# --- target ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "app_dir", "factory", "says"),
    [
        ("tests.probe_apps", ".", False, "is not PKG.MODULE:APP"),
        ("tests.nowhere:app", ".", False, 'Could not import module "tests.nowhere"'),
        ("tests.probe_apps:nothing", ".", False, 'Attribute "nothing" not found'),
        ("tests.probe_apps:NOT_AN_APP", ".", False, "not an ASGI app"),
        ("tests.probe_apps:make_app", ".", False, "add --factory"),
        ("tests.probe_apps:router", ".", False, "not a FastAPI one"),
        ("tests.probe_apps:faulty", ".", True, "faulty() raised TypeError"),
        ("tests.probe_apps:broken_import", ".", True, "RuntimeError: the app could not"),
        ("probe_broken:app", "tests/data", False, "RuntimeError: cannot reach the"),
        # The app's own dependency missing here: how to install it, in the same line.
        ("probe_missing_dependency:app", "tests/data", False, "install the app's dependencies"),
        # The app's own package not under --app-dir: the folder, not a missing dependency.
        ("nowhere_pkg.main:app", "tests/data", False, "put the folder that holds it first"),
        # An app folder with a package named as one of the lab's: refused, not half-imported.
        ("shadowed:app", "tests/data/shadowing", False, "has top-level `analysis`"),
        ("x:app", "no/such/dir", False, "is not a folder"),
    ],
)
def test_a_bad_target_is_one_line(spec: str, app_dir: str, factory: bool, says: str) -> None:
    with pytest.raises(TargetError) as raised:
        load(Target(spec, REPO / app_dir, factory))
    text = str(raised.value)
    assert says in text and "\n" not in text


def test_a_factory_is_called_and_the_app_dir_goes_on_sys_path() -> None:
    assert load(Target("tests.probe_apps:make_app", REPO, factory=True)) is probe_apps.faulty
    assert str(REPO) in sys.path


# --- inventory ------------------------------------------------------------------------------------


def test_the_inventory_has_fastapis_own_styles_and_the_dependency_tree() -> None:
    routes = by_path(routes_of(probe_apps.styles))
    plain = routes["GET /def"]
    assert plain["style"] == DEF and plain["threadpool"] is True
    assert [(d["name"].rsplit(".", 1)[-1], d["style"]) for d in plain["dependencies"]] == [
        ("sync_dep", DEF),
        ("async_dep", ASYNC_DEF),
        ("sync_yield", "def + yield"),
    ]
    assert plain["endpoint"]["file"] == "tests/probe_apps.py" and plain["endpoint"]["user"]
    assert routes["GET /async"]["style"] == ASYNC_DEF and routes["GET /async"]["awaits"] is False
    assert routes["GET /awaits"]["awaits"] is True
    # A route-level dependency is in the tree too.
    assert routes["GET /counted"]["dependencies"][0]["style"] == "def + yield"


def test_a_dependency_asked_for_twice_is_listed_once_unless_it_is_not_cached() -> None:
    routes = by_path(routes_of(probe_apps.cached))
    twice = [
        (d["name"].rsplit(".", 2)[-2:], d["style"]) for d in routes["GET /twice"]["dependencies"]
    ]
    assert twice == [
        (["probe_apps", "sync_yield"], "def + yield"),
        (["probe_apps", "current_user"], DEF),
        (["Bearer", "__call__"], ASYNC_DEF),
    ]
    uncached = [d["name"] for d in routes["GET /uncached"]["dependencies"]]
    assert uncached == ["tests.probe_apps.sync_yield"] * 2
    # The arm caps the named dependency once, and the report names the class, not `__call__`.
    assert yield_dependencies(routes["GET /twice"]) == ["tests.probe_apps.sync_yield"]
    assert dependency_text(routes["GET /twice"]) == (
        "sync_yield: def + yield; current_user: def; Bearer: async def"
    )


@pytest.mark.parametrize("path", ["/twice", "/uncached", "/solved-again", "/stored-uncached"])
def test_the_inventory_lists_each_dependency_as_often_as_fastapi_runs_it(path: str) -> None:
    # FastAPI solves a dependency's own dependencies before it, calls a cached one once, and
    # stores even a `use_cache=False` value (solve_dependencies): held to what a request runs.
    route = by_path(routes_of(probe_apps.cached))[f"GET {path}"]
    listed = sorted(d["name"].rsplit(".", 1)[-1] for d in route["dependencies"])
    probe_apps.CALLS.clear()
    assert TestClient(probe_apps.cached).get(path).status_code == 200
    recorded = [n for n in listed if n in {"get_db", "get_user", "other", "dbfirst"}]
    assert recorded == sorted(probe_apps.CALLS), (listed, probe_apps.CALLS)


def test_included_routers_keep_their_prefix() -> None:
    routes = by_path(routes_of(probe_apps.shapes))
    assert routes["GET /v2/nested/{n}"]["style"] == ASYNC_DEF
    assert routes["GET /v2/nested/{n}"]["id"] == "get-v2-nested-n"


def test_style_of_agrees_with_inspect_on_plain_functions() -> None:
    assert style_of(probe_apps.sync_dep) == DEF
    assert style_of(probe_apps.async_dep) == ASYNC_DEF
    assert style_of(probe_apps.sync_yield) == "def + yield"


# --- requests from the OpenAPI document -----------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_plans() -> dict:
    doc = routes_of(probe_apps.shapes)
    return {p.label: p for p in plan_requests(doc)}


@pytest.mark.parametrize(
    ("label", "path", "query"),
    [
        ("GET /int/{n}", "/int/5", {}),  # the schema's minimum
        ("GET /enum/{colour}", "/enum/red", {}),  # the first of the enum
        ("GET /uuid/{key}", "/uuid/00000000-0000-4000-8000-000000000001", {}),
        ("GET /example/{slug}", "/example/hello-world", {}),  # the parameter's own example
        ("GET /query", "/query", {"q": "probexx"}),  # required only, padded to minLength
        ("GET /v2/nested/{n}", "/v2/nested/1", {}),
    ],
)
def test_requests_are_filled_from_the_document(
    shapes_plans: dict, label: str, path: str, query: dict
) -> None:
    plan = shapes_plans[label]
    assert not plan.not_probed
    (request,) = plan.requests
    assert (request.path, request.query) == (path, query)


def test_a_required_header_is_sent(shapes_plans: dict) -> None:
    (request,) = shapes_plans["GET /header"].requests
    assert request.headers == {"x-token": "probe"}


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("GET /pattern/{code}", "its path parameter `code`: its value must match the pattern"),
        ("GET /cookie", "it needs the cookie `session`"),
        ("POST /body", "not a safe method"),
        ("DELETE /things/{n}", "it may change the app's data"),
    ],
)
def test_a_route_the_probe_cannot_call_says_why(shapes_plans: dict, label: str, why: str) -> None:
    plan = shapes_plans[label]
    assert why in plan.not_probed and not plan.requests


def test_unsafe_probes_bodyless_writes_but_still_not_a_required_body() -> None:
    plans = {p.label: p for p in plan_requests(routes_of(probe_apps.shapes), unsafe=True)}
    assert plans["DELETE /things/{n}"].requests[0].path == "/things/1"
    assert "needs a request body" in plans["POST /body"].not_probed


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requests.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_requests_file_replaces_and_adds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[request]]
        method = "POST"
        path = "/body"
        json = { name = "x" }
        weight = 3
        [[request]]
        path = "/int/7"
        [[request]]
        path = "/int/{n}"
        params = { n = 8, extra = "y" }
        """,
    )
    plans = {p.label: p for p in plan_requests(routes_of(probe_apps.shapes), path)}
    (body,) = plans["POST /body"].requests
    assert (body.json, body.weight, body.source) == ({"name": "x"}, 3.0, "requests.toml #1")
    ints = plans["GET /int/{n}"].requests
    assert [(r.path, r.query) for r in ints] == [("/int/7", {}), ("/int/8", {"extra": "y"})]
    # Routes the file does not name keep theirs.
    assert plans["GET /enum/{colour}"].requests[0].source == "openapi"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[request]]\npath = "/nope"\n', "matches no route of the app"),
        ('[[request]]\nmethod = "PUT"\npath = "/int/{n}"\n', "matches no route"),
        ('[[request]]\npath = "/int/{n}"\nbody = 1\n', "unknown keys ['body']"),
        ('[[request]]\nmethod = "GET"\n', "has no `path`"),
        ("[[requests]]\n", "unknown keys ['requests']"),
        ("headers = 3\n", "`headers` must be a table"),
        ("headers = { X = { nested = 1 } }\n", "`headers` must be a table"),
        ("", "no [[request]] table and no `headers`"),
        ("not toml at all = = =\n", "not TOML"),
        ('[[request]]\npath = "/int/{n}"\n', "path parameter `n` has no value"),
    ],
)
def test_a_bad_requests_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(RequestsFileError) as raised:
        plan_requests(routes_of(probe_apps.shapes), write(tmp_path, text))
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_headers_for_every_request_go_under_each_requests_own(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        headers = { Authorization = "Bearer file", X-Token = "from-file" }
        [[request]]
        path = "/int/7"
        headers = { authorization = "Bearer own" }
        """,
    )
    doc = routes_of(probe_apps.shapes)
    plans = {p.label: p for p in plan_requests(doc, path, headers={"X-Trace": "cli"})}
    (given,) = plans["GET /int/{n}"].requests
    # The request's own header wins (names compare without case); the rest are added.
    assert given.headers == {
        "X-Token": "from-file",
        "X-Trace": "cli",
        "authorization": "Bearer own",
    }
    (made,) = plans["GET /enum/{colour}"].requests
    assert made.headers == {
        "Authorization": "Bearer file",
        "X-Token": "from-file",
        "X-Trace": "cli",
    }
    # A required header parameter the user gives is sent as given, not made up.
    (header,) = plans["GET /header"].requests
    assert header.headers["X-Token"] == "from-file"
    # Names differing only in case are one header: the last given wins.
    plans = {p.label: p for p in plan_requests(doc, headers={"X-A": "1", "x-a": "2"})}
    assert plans["GET /enum/{colour}"].requests[0].headers == {"x-a": "2"}
    # --header wins over the file's.
    plans = {p.label: p for p in plan_requests(doc, path, headers={"x-token": "cli"})}
    assert plans["GET /header"].requests[0].headers == {
        "Authorization": "Bearer file",
        "x-token": "cli",
    }


def test_the_runs_record_keeps_no_credential() -> None:
    request = ProbeRequest(
        "GET /x",
        "GET",
        "/x",
        headers={"Authorization": "Bearer s3cret", "X-Api-Key": "k", "Accept": "a"},
    )
    kept = request.to_record()["headers"]
    assert kept == {"Authorization": "<redacted>", "X-Api-Key": "<redacted>", "Accept": "a"}
    # The locustfile's copy keeps them: the cells send them.
    assert request.to_dict()["headers"]["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("text", ["no-colon", ": empty name", "Two words: x"])
def test_a_bad_header_is_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="is not `Name: value`"):
        parse_header(text)
    assert parse_header("Authorization:  Bearer a:b ") == ("Authorization", "Bearer a:b")


def test_routes_are_selected_by_path_label_name_or_id() -> None:
    plans = plan_requests(routes_of(probe_apps.shapes))
    chosen = select_routes(plans, ["/query", "GET /int/{n}", "enum_path", "get-v2-nested-n"])
    assert [p.label for p in chosen] == [
        "GET /query",
        "GET /int/{n}",
        "GET /enum/{colour}",
        "GET /v2/nested/{n}",
    ]
    with pytest.raises(ValueError, match="names no route"):
        select_routes(plans, ["/missing"])


# --- the plan -------------------------------------------------------------------------------------


def test_each_route_gets_the_arms_that_apply() -> None:
    routes = by_path(routes_of(probe_apps.styles))
    cells, left = route_cells(routes["GET /counted"], Settings(), pool_capacity=2)
    arms_run = [c.arm.name for c in cells]
    assert arms_run == ["", "", "", "flip", "t010", "t100", "maxconc", ""]
    assert cells[6].arm.max_concurrency == {"tests.probe_apps.counted_yield": 2}
    assert not left
    cells, left = route_cells(routes["GET /awaits"], Settings())
    assert [c.arm.name for c in cells] == ["", "", ""]
    assert set(left) == {"flip", "tokens", "maxconc"}
    assert "awaits" in flip_applies(routes["GET /awaits"])
    quick, _ = route_cells(routes["GET /async"], QUICK)  # nothing on a thread: no token arm
    assert [c.cell.cell_id for c in quick] == [
        "get-async__app-none__u010__r1",
        "get-async__app-none__u200__r1",
        "get-async__app-none__u200__flip__r1",
    ]


def test_the_capacity_ladder_comes_from_the_closed_loop() -> None:
    assert ladder(1234.0, Settings()) == [310, 740, 1200]
    assert ladder(None, Settings()) == [] and ladder(0.0, Settings()) == []


# --- the arms change what FastAPI does -----------------------------------------------------------


def fresh_module(flip: tuple[str, ...] = ()) -> Any:
    """tests/probe_apps.py imported afresh, with `flip` installed while its routes are built."""
    undo = arms.install_flips(flip)
    try:
        sys.modules.pop("tests.probe_apps", None)
        module = importlib.import_module("tests.probe_apps")
    finally:
        undo()
        sys.modules["tests.probe_apps"] = probe_apps
    return module


def fresh_styles(flip: tuple[str, ...] = ()) -> FastAPI:
    return fresh_module(flip).styles


def test_flip_moves_a_def_endpoint_onto_the_loop_and_back() -> None:
    as_written = fresh_styles()
    flipped = fresh_styles(("tests.probe_apps.plain_def", "tests.probe_apps.plain_async"))
    with TestClient(as_written) as client:
        assert client.get("/def").json() == {"on_loop": False}
        assert client.get("/async").json() == {"on_loop": True}
    with TestClient(flipped) as client:
        assert client.get("/def").json() == {"on_loop": True}
        assert client.get("/async").json() == {"on_loop": False}
    # The flip changes the style only: the same OpenAPI document.
    assert flipped.openapi() == as_written.openapi()
    assert style_of(flipped.router.routes[-4].endpoint) == ASYNC_DEF  # /def


def test_flipping_an_endpoint_that_awaits_fails_its_request() -> None:
    flipped = fresh_styles(("tests.probe_apps.awaits_something",))
    with TestClient(flipped, raise_server_exceptions=False) as client:
        assert client.get("/awaits").status_code == 500


def test_max_concurrency_caps_a_yield_dependency() -> None:
    def most_inside(limit: int | None) -> int:
        module = fresh_module()
        app = module.styles
        if limit is not None:
            found = arms.limit_dependencies(app, {"tests.probe_apps.counted_yield": limit})
            assert found == {"tests.probe_apps.counted_yield": 1}
        with TestClient(app) as client, ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: client.get("/counted").status_code, range(24)))
        assert statuses == [200] * 24
        return module.INSIDE["most"]

    assert most_inside(2) == 2
    assert most_inside(None) > 2


def test_tokens_are_set_on_the_running_loop() -> None:
    async def main() -> tuple[int, int]:
        before = arms.set_tokens(None)
        return before, arms.set_tokens(7)

    assert asyncio.run(main()) == (40, 7)


def test_an_arm_round_trips_through_json() -> None:
    arm = arms.Arm("maxconc", max_concurrency={"a.b": 3})
    assert arms.Arm.from_json(arm.to_json()) == arm
    with pytest.raises(ValueError):
        arms.Arm.from_json('{"nonsense": 1}')


# --- the loop sampler names the line --------------------------------------------------------------


def test_the_sampler_names_the_line_that_holds_the_loop_and_not_one_that_awaits() -> None:
    watch = LoopWatch(REPO)

    async def main() -> None:
        async with watch.running():
            for _ in range(3):
                await probe_apps.sleeps()
                await probe_apps.awaits_only()
                await probe_apps.spins()
                await asyncio.sleep(0.02)

    asyncio.run(main())
    report = watch.report()
    sites = report["sites"]
    holds = {}
    for _began, held_ms, index, _cpu in report["holds"]:
        site = sites[index]
        if held_ms >= report["threshold_ms"]:
            holds.setdefault((site["file"], site["line"], site["call"]), []).append(held_ms)
    file = "tests/probe_apps.py"
    sleeping = holds[(file, probe_apps.line("sleeps"), "time.sleep")]
    assert len(sleeping) == 3 and all(50 <= ms <= 120 for ms in sleeping), sleeping
    spinning = [k for k in holds if k[1] == probe_apps.line("spins")]
    assert spinning and spinning[0][2] == ""  # pure Python: no call under it
    assert all(k[1] != probe_apps.line("awaits") for k in holds)


FAKE_LIBRARY = """
import asyncio, functools, time


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


class Query:
    @logged
    def first(self):
        time.sleep(0.06)
        return 1


class Client:
    @logged
    def fetch(self, seconds):
        time.sleep(seconds)
        return "done"

    def query(self, n):
        return Query()

    async def parse(self, n):
        await asyncio.sleep(0)
        total = sum(i % 7 for i in range(n))
        await asyncio.sleep(0)
        return total


client = Client()
"""


def test_the_sampler_names_a_wrapped_call_as_written_and_tells_an_awaited_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client library (installed: under site-packages, not the app's code) whose sync call is
    # wrapped by a decorator, as `openai`'s are, and whose async call computes between awaits.
    lib = tmp_path / "site-packages"
    lib.mkdir()
    (lib / "probe_fake_client.py").write_text(FAKE_LIBRARY)
    monkeypatch.syspath_prepend(str(lib))
    client = importlib.import_module("probe_fake_client").client
    watch = LoopWatch(REPO)
    wrapped = parses = chained = 0

    async def main() -> None:
        nonlocal wrapped, parses, chained
        async with watch.running():
            for _ in range(3):
                wrapped = sys._getframe().f_lineno + 1
                client.fetch(0.06)
                parses = sys._getframe().f_lineno + 1
                await client.parse(1_500_000)
                # Let the heartbeat in: two holds of one frame back to back are one hold.
                await asyncio.sleep(0.02)
                chained = sys._getframe().f_lineno + 1
                client.query(1).first()
                await asyncio.sleep(0.02)

    asyncio.run(main())
    report = watch.report()
    seen = {
        (report["sites"][i]["line"], report["sites"][i]["call"], report["sites"][i]["awaited"])
        for _b, held_ms, i, _c in report["holds"]
        if held_ms >= report["threshold_ms"]
    }
    # A decorator's wrapper (`logged.<locals>.wrapper`) is named by the call the user wrote.
    assert (wrapped, "client.fetch", False) in seen, seen
    # A chain: the call that held the loop, with what it was called on.
    assert (chained, "client.query(1).first", False) in seen, seen
    # CPU between two awaits of an awaited coroutine: held inside it, and said so.
    assert (parses, "probe_fake_client.Client.parse", True) in seen, seen


def test_the_sampler_writes_its_report_from_its_own_thread(tmp_path: Path) -> None:
    out = tmp_path / "blocking.json"
    watch = LoopWatch(REPO, report_path=out)
    seen: list[dict] = []

    async def main() -> None:
        async with watch.running():
            await probe_apps.sleeps()
            await asyncio.sleep(0.01)
            held = threading.Thread(target=lambda: None)
            held.start()
            # Held for good: only the watcher's thread can still write what it sees.
            import time

            time.sleep(0.8)
            seen.append(json.loads(out.read_text()))

    asyncio.run(main())
    during = seen[0]
    assert during["ongoing"] is not None and during["ongoing"][1] >= 400


def test_a_pure_python_hold_without_cpu_is_the_machines_not_the_apps() -> None:
    from analysis.load.probe import held_in_window

    blocking = {
        "threshold_ms": 10.0,
        "sites": [
            {"file": "app.py", "line": 3, "call": "", "library": "", "route": "r"},
            {"file": "app.py", "line": 7, "call": "time.sleep", "library": "", "route": "r"},
        ],
        "holds": [
            [100.0, 40.0, 0, 39.0],  # CPU work: kept
            [100.1, 40.0, 0, 2.0],  # pure Python, no CPU: the thread waited for a core
            [100.2, 60.0, 1, 0.5],  # a blocking call uses no CPU: kept
            [100.3, 5.0, 1, 0.1],  # under the threshold: a slice of a longer episode
            [200.0, 60.0, 1, 0.5],  # outside the window
        ],
    }
    held = {h.site: h.held_ms for h in held_in_window(blocking, 99.0, 150.0, "r")}
    assert held == {"app.py:3": (40.0,), "app.py:7": (60.0,)}
