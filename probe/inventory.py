"""What the user's app is made of: every route, its handler style and its dependencies' styles.

`python -m probe.inventory PKG.MODULE:APP --app-dir DIR [--factory] --out routes.json` imports the
app in a child process (the orchestrator never imports user code) and writes one JSON document:
each route's method, path, endpoint (`file:line`), the style FastAPI will run it in, whether its
body awaits, its dependency tree with each dependency's style, and the app's OpenAPI document.

The style is FastAPI's own decision, asked of FastAPI: `fastapi.routing.get_request_handler`
computes `is_coroutine = _is_coroutine_callable(dependant.call)` once per route and then awaits
the endpoint on the event loop (`run_endpoint_function`) or sends it to the threadpool with
`run_in_threadpool`; `fastapi.dependencies.utils.solve_dependencies` makes the same choice per
dependency (`_is_gen_callable` -> `contextmanager_in_threadpool`, `_is_coroutine_callable` ->
await, anything else -> `run_in_threadpool`). Those functions (`fastapi.dependencies.models`) are
private, so they are imported with a fallback to `inspect`, and a test checks both agree.
"""

import argparse
import ast
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from probe.target import Target, TargetError, load

ASYNC_DEF = "async def"
DEF = "def"
# A `yield` dependency: FastAPI enters it around the request (in the threadpool for `def`).
YIELD = "yield"

try:  # FastAPI's own cache key of a dependency's value (private API; see `runs_once`)
    from fastapi.dependencies.models import _get_cache_key
except ImportError:  # pragma: no cover - an older or newer FastAPI

    def _get_cache_key(*, dependant: Any) -> Any:
        return (dependant.call, tuple(getattr(dependant, "oauth_scopes", None) or ()))


try:  # FastAPI's own classification (private API; see the module docstring)
    from fastapi.dependencies.models import (
        _is_async_gen_callable,
        _is_coroutine_callable,
        _is_gen_callable,
    )
except ImportError:  # pragma: no cover - an older or newer FastAPI

    def _is_coroutine_callable(call: Any) -> bool:
        target = inspect.unwrap(call)
        if inspect.isroutine(target):
            return inspect.iscoroutinefunction(target)
        return inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004

    def _is_gen_callable(call: Any) -> bool:
        return inspect.isgeneratorfunction(inspect.unwrap(call))

    def _is_async_gen_callable(call: Any) -> bool:
        return inspect.isasyncgenfunction(inspect.unwrap(call))


def style_of(call: Callable[..., Any]) -> str:
    """`async def`, `def`, `async def + yield` or `def + yield`, as FastAPI will run `call`."""
    if _is_async_gen_callable(call):
        return f"{ASYNC_DEF} + {YIELD}"
    if _is_gen_callable(call):
        return f"{DEF} + {YIELD}"
    return ASYNC_DEF if _is_coroutine_callable(call) else DEF


def runs_in_threadpool(style: str) -> bool:
    """Whether FastAPI runs a callable of this style on a worker thread (anyio's tokens)."""
    return style.startswith(f"{DEF}")


def function_of(call: Callable[..., Any]) -> Any:
    """The Python function behind `call`: unwrapped, a class's `__call__` for an instance."""
    target = inspect.unwrap(call)
    while hasattr(target, "func") and not inspect.isroutine(target):  # functools.partial
        target = target.func
    if not inspect.isroutine(target) and not inspect.isclass(target):
        target = getattr(type(target), "__call__", target)  # noqa: B004
    return inspect.unwrap(target)


def site_of(call: Callable[..., Any], app_dir: Path) -> dict[str, Any]:
    """Where `call` is written: `file` (relative to the app folder when inside it), `line` of
    its `def`, `name` (module.qualname), and whether it is the user's own code."""
    func = function_of(call)
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    try:
        file = Path(inspect.getsourcefile(func) or "")
        lines, first = inspect.getsourcelines(func)
    except (OSError, TypeError):
        return {"name": name, "file": "", "line": None, "user": False}
    line = first + next((i for i, text in enumerate(lines) if _DEF.match(text)), 0)
    return {"name": name, **located(file, line, app_dir)}


_DEF = re.compile(r"^\s*(async\s+)?def\s")


def located(file: Path, line: int | None, app_dir: Path) -> dict[str, Any]:
    """`file` relative to the app folder when it is the user's code, else as it is."""
    resolved = file.resolve() if str(file) else file
    root = app_dir.resolve()
    user = is_user_file(resolved, root)
    shown = str(resolved.relative_to(root)) if user else str(resolved)
    return {"file": shown, "line": line, "user": user}


# The lab's own instrumentation, which runs inside a probed app: never the app's code (the
# probe's package, and the monitor `probe/instrument.py` runs from `servers/metrics.py`).
LAB_CODE: tuple[Path, ...] = (
    Path(__file__).resolve().parent,
    Path(__file__).resolve().parent.parent / "servers" / "metrics.py",
)


def is_lab_file(path: Path) -> bool:
    """Whether `path` is the lab's instrumentation (LAB_CODE)."""
    return any(path == lab or path.is_relative_to(lab) for lab in LAB_CODE)


def is_user_file(path: Path, root: Path) -> bool:
    """Code of the app: under its folder, not an installed package, not the lab's own."""
    text = str(path)
    if "site-packages" in text or "dist-packages" in text or not text.endswith(".py"):
        return False
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return not is_lab_file(path)


def awaits(call: Callable[..., Any]) -> bool | None:
    """Whether the body of `call` itself awaits (`await`, `async for`, `async with`).

    None when its source cannot be read. Nested functions do not count: they run when called.
    """
    func = function_of(call)
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    body = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None
    )
    if body is None:
        return None
    return any(_awaits(stmt) for stmt in body.body)


def _awaits(node: ast.AST) -> bool:
    if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith):
        return True
    nested = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
    return any(
        _awaits(child) for child in ast.iter_child_nodes(node) if not isinstance(child, nested)
    )


def runs_once(dependant: Any) -> dict[int, bool]:
    """Which occurrences of the route's dependencies run (id of the sub-dependant -> whether it
    is called), as `fastapi.dependencies.utils.solve_dependencies` solves them: depth first, a
    dependency's own dependencies before it; an occurrence with `use_cache` (the default) whose
    cache key (`_get_cache_key`: its callable, OAuth scopes, scope) is already in the request's
    `dependency_cache` is not called again; every value solved is stored there, `use_cache=False`
    ones included. An unhashable key (FastAPI would fail on it at the request) counts as run."""
    solved: set[Any] = set()
    runs: dict[int, bool] = {}

    def solve(node: Any) -> None:
        for sub in getattr(node, "dependencies", []) or []:
            if getattr(sub, "call", None) is None:
                continue
            solve(sub)
            try:
                key = _get_cache_key(dependant=sub)
                cached = bool(getattr(sub, "use_cache", True)) and key in solved
                solved.add(key)
            except TypeError:
                cached = False
            runs[id(sub)] = not cached

    solve(dependant)
    return runs


def dependencies(
    dependant: Any, app_dir: Path, depth: int = 0, runs: dict[int, bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Every dependency of a route that runs, depth first, each with its style and where it is.

    A dependency the route asks for twice (`get_db` of the endpoint and of `get_current_user`)
    runs once per request when FastAPI finds its value cached (`runs_once`), so it is listed
    once; its own dependencies are still walked, as FastAPI solves them again.
    """
    runs = runs_once(dependant) if runs is None else runs
    for sub in getattr(dependant, "dependencies", []) or []:
        call = getattr(sub, "call", None)
        if call is None:
            continue
        if runs.get(id(sub), True):
            concurrency = getattr(sub, "concurrency", None)
            yield {
                "depth": depth,
                "style": style_of(call),
                **site_of(call, app_dir),
                "scope": getattr(sub, "scope", None),
                "max_concurrency": getattr(concurrency, "max_concurrency", None),
            }
        yield from dependencies(sub, app_dir, depth + 1, runs)


def route_id(method: str, path: str) -> str:
    """A route's id in cell ids and file names: `get-items-item_id` for `GET /items/{item_id}`."""
    words = re.sub(r"[^A-Za-z0-9_]+", "-", path).strip("-")
    return f"{method.lower()}-{words}" if words else f"{method.lower()}-root"


def route_contexts(app: Any) -> Iterator[Any]:
    """The app's routes as FastAPI serves them (included routers' routes with their prefix)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before included-router contexts
        yield from app.routes
        return
    yield from iter_route_contexts(app.routes)


def inventory(target: Target, app: Any) -> dict[str, Any]:
    """The document `python -m probe.inventory` writes."""
    routes: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    seen: set[str] = set()
    for context in route_contexts(app):
        path = getattr(context, "path_format", None) or getattr(context, "path", None) or ""
        methods = sorted(getattr(context, "methods", None) or [])
        dependant = getattr(context, "dependant", None)
        endpoint = getattr(context, "endpoint", None)
        if dependant is None or endpoint is None or not methods:
            kind = type(getattr(context, "route", context)).__name__
            others.append({"path": path, "kind": kind, "name": getattr(context, "name", None)})
            continue
        style = style_of(dependant.call)
        for method in methods:
            if method == "HEAD" and "GET" in methods:
                continue  # Starlette adds HEAD to every GET route
            rid = route_id(method, path)
            n = 2
            while rid in seen:
                rid, n = f"{route_id(method, path)}-{n}", n + 1
            seen.add(rid)
            routes.append(
                {
                    "id": rid,
                    "method": method,
                    "path": path,
                    "name": getattr(context, "name", None),
                    "style": style,
                    "threadpool": runs_in_threadpool(style),
                    "awaits": awaits(dependant.call),
                    "endpoint": site_of(endpoint, target.app_dir),
                    "dependencies": list(dependencies(dependant, target.app_dir)),
                    "response_model": getattr(context, "response_field", None) is not None,
                    "in_schema": bool(getattr(context, "include_in_schema", True)),
                }
            )
    try:
        openapi, openapi_error = app.openapi(), ""
    except Exception as exc:  # the app's own document fails to build
        openapi, openapi_error = {}, f"{type(exc).__name__}: {exc}"
    return {
        "app": target.spec,
        "app_dir": str(target.app_dir.resolve()),
        "factory": target.factory,
        "python": sys.version.split()[0],
        "versions": {p: _version(p) for p in ("fastapi", "starlette", "uvicorn", "anyio")},
        "routes": routes,
        "other_routes": others,
        "openapi": openapi,
        "openapi_error": openapi_error,
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Write the inventory; a bad target prints one line on stderr and exits 2."""
    parser = argparse.ArgumentParser(prog="python -m probe.inventory", description=__doc__)
    parser.add_argument("app")
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        target = Target(args.app, args.app_dir, args.factory)
        document = inventory(target, load(target))
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(document, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
