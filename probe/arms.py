"""Arms: the other style, or another setting, applied to the user's app without editing its code.

Where FastAPI decides, and so where each arm acts (fastapi 0.165, `fastapi/routing.py` and
`fastapi/dependencies/`):

- **The endpoint's style** is decided once per route, when the route is built:
  `APIRoute.__init__` -> `get_request_handler` computes `is_coroutine =
  _is_coroutine_callable(dependant.call)`, and `run_endpoint_function` then awaits the endpoint
  on the event loop or calls `run_in_threadpool(...)`; `serialize_response` validates the
  response in the threadpool too when `is_coroutine` is false. Routes of an included router are
  built again per inclusion (`_EffectiveRouteContext.from_api_route`) from `route.endpoint`.
  So a flip must change the endpoint *before* its `APIRoute` is built: `install_flips` wraps
  `APIRoute.__init__` before the user's module is imported, and hands it a wrapper of the other
  style. `to_async` is what "just add `async`" does: the `def` body called inline on the loop.
  `to_sync` is what removing `async` does: FastAPI runs it in the threadpool; it drives the
  coroutine to its end in one step, so it applies only to a body that never awaits (the
  inventory checks the source; a body that does await fails the arm's first request, and the
  arm is reported as not applicable).
- **The threadpool** is anyio's default limiter (`anyio.to_thread.current_default_thread_limiter`),
  read at every `run_in_threadpool`: `set_tokens` sets its `total_tokens` once the app started.
- **`max_concurrency` on a dependency** (FastAPI 0.165's `Depends(..., max_concurrency=N)`) is
  the `Dependant.concurrency` field, read at every request by `solve_dependencies` and
  `_solve_generator` (it holds an anyio semaphore around the dependency, a `yield` one until
  its exit). `limit_dependencies` sets it on every dependant of the named function after the
  app is built: one `_DependencyConcurrency` for all of them, as one `Annotated` alias would.

`tests/test_probe_units.py` checks that each arm really changes what FastAPI does: the thread an
endpoint runs on, the limiter's tokens, the most requests inside a dependency at once.
"""

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio.to_thread

from probe.inventory import function_of, route_contexts

# Arm names, as cell ids and reports use them.
AS_WRITTEN = ""
FLIP = "flip"
TOKENS = "t"  # t010, t100: the threadpool at 10 or 100 tokens
MAX_CONCURRENCY = "maxconc"


def qualified(call: Callable[..., Any]) -> str:
    """`module.qualname` of the function behind `call`: how arms name endpoints and deps."""
    func = function_of(call)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


@dataclass(frozen=True)
class Arm:
    """What one cell's server changes in the app: endpoints to flip, tokens, dependency limits."""

    name: str = AS_WRITTEN
    # Endpoints (module.qualname) FastAPI must run in the other style.
    flip: tuple[str, ...] = ()
    # anyio's default limiter: threads for `def` endpoints and sync dependencies.
    tokens: int | None = None
    # Dependencies (module.qualname) to run under `max_concurrency=N`.
    max_concurrency: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """How the orchestrator hands the arm to `python -m probe.serve`."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Arm":
        """The arm `to_json` wrote; ValueError on anything else."""
        data = json.loads(text or "{}")
        known = {"name", "flip", "tokens", "max_concurrency"}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not an arm: {text!r}")
        return cls(
            name=str(data.get("name", "")),
            flip=tuple(data.get("flip", ())),
            tokens=data.get("tokens"),
            max_concurrency={
                str(k): int(v) for k, v in (data.get("max_concurrency") or {}).items()
            },
        )

    def settings(self) -> dict[str, Any]:
        """What the arm changes, as cell.json records it."""
        return {k: v for k, v in asdict(self).items() if v not in ((), None, {}, "")}


# --- Flipping an endpoint's style --------------------------------------------------------------


class FlipError(RuntimeError):
    """A flipped `def` body awaited something that really suspends: the flip cannot apply."""


def to_async(func: Callable[..., Any]) -> Callable[..., Any]:
    """`def` -> `async def`: the same body, called inline on the event loop."""

    @functools.wraps(func)
    async def flipped(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return flipped


def to_sync(func: Callable[..., Any]) -> Callable[..., Any]:
    """`async def` -> `def`: FastAPI runs it in the threadpool; the coroutine is driven to its
    end in one step there, so a body that suspends raises FlipError instead of blocking.

    No `__wrapped__`: FastAPI unwraps to classify (`_unwrapped_call`) and would find the
    coroutine function again. The signature is copied with its annotations evaluated, as FastAPI
    reads them (`_get_signature`), since the wrapper's globals are not the user's module's.
    """

    def flipped(*args: Any, **kwargs: Any) -> Any:
        coroutine = func(*args, **kwargs)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        coroutine.close()
        raise FlipError(
            f"{qualified(func)} awaited something that suspends: it cannot run as `def` unless "
            "its async calls are replaced by blocking ones"
        )

    flipped.__signature__ = inspect.signature(func, eval_str=True)  # type: ignore[attr-defined]
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(flipped, attribute, getattr(func, attribute, None))
    flipped.__lab_flipped__ = func  # type: ignore[attr-defined]
    return flipped


def flipped_version(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The endpoint in the other style (as FastAPI classifies it)."""
    from probe.inventory import ASYNC_DEF, style_of

    style = style_of(endpoint)
    if style == ASYNC_DEF:
        return to_sync(endpoint)
    if style == "def":
        return to_async(endpoint)
    raise ValueError(f"{qualified(endpoint)} is a generator endpoint ({style}): no flip")


def install_flips(names: tuple[str, ...]) -> Callable[[], None]:
    """Wrap `APIRoute.__init__` so the named endpoints are built in the other style; returns the
    undo. Must run before the user's module is imported (routes are built at import)."""
    from fastapi.routing import APIRoute

    if not names:
        return lambda: None
    original = APIRoute.__init__
    wanted = set(names)

    @functools.wraps(original)
    def building(
        self: APIRoute, path: str, endpoint: Callable[..., Any], *a: Any, **k: Any
    ) -> None:
        if qualified(endpoint) in wanted and not hasattr(endpoint, "__lab_flipped__"):
            endpoint = flipped_version(endpoint)
        original(self, path, endpoint, *a, **k)

    APIRoute.__init__ = building  # type: ignore[method-assign]

    def undo() -> None:
        APIRoute.__init__ = original  # type: ignore[method-assign]

    return undo


# --- Settings applied once the app exists ------------------------------------------------------


def dependants(app: Any) -> Iterator[Any]:
    """Every dependant of every route (route-level dependencies included), depth first."""

    def walk(dependant: Any) -> Iterator[Any]:
        for sub in getattr(dependant, "dependencies", None) or []:
            yield sub
            yield from walk(sub)

    for context in route_contexts(app):
        dependant = getattr(context, "dependant", None)
        if dependant is not None:
            yield from walk(dependant)


def limit_dependencies(app: Any, limits: dict[str, int]) -> dict[str, int]:
    """Set `max_concurrency` on every dependant of each named dependency; how many were set."""
    from fastapi.concurrency import _DependencyConcurrency

    shared = {name: _DependencyConcurrency(n) for name, n in limits.items()}
    found = dict.fromkeys(limits, 0)
    for dependant in dependants(app):
        call = getattr(dependant, "call", None)
        name = qualified(call) if call is not None else ""
        if name in shared:
            dependant.concurrency = shared[name]
            found[name] += 1
    return found


def set_tokens(tokens: int | None) -> int:
    """Set anyio's default limiter (call on the running loop); the tokens it now has."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    if tokens is not None:
        limiter.total_tokens = tokens
    return int(limiter.total_tokens)
