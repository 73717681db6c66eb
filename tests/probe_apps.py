"""Small FastAPI apps for the probe's tests: each line a test names is marked `# line:<name>`.

`line(name)` finds the line, so a test asserts a site without hard-coding a number.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import (
    APIRouter,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
)
from fastapi import (
    Path as PathParam,
)
from pydantic import BaseModel

HERE = Path(__file__)


def line(name: str) -> int:
    """The line marked `# line:<name>` in this file."""
    for number, text in enumerate(HERE.read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# line:{name}"):
            return number
    raise KeyError(name)


class Colour(StrEnum):
    red = "red"
    blue = "blue"


class Body(BaseModel):
    name: str


# --- An app the request generation reads ----------------------------------------------------

shapes = FastAPI()
router = APIRouter(prefix="/v2")


@shapes.get("/int/{n}")
def int_path(n: Annotated[int, PathParam(ge=5, le=9)]) -> dict[str, int]:
    return {"n": n}


@shapes.get("/enum/{colour}")
def enum_path(colour: Colour) -> dict[str, str]:
    return {"colour": colour.value}


@shapes.get("/uuid/{key}")
def uuid_path(key: UUID) -> dict[str, str]:
    return {"key": str(key)}


@shapes.get("/example/{slug}")
def example_path(slug: Annotated[str, PathParam(examples=["hello-world"])]) -> dict[str, str]:
    return {"slug": slug}


@shapes.get("/pattern/{code}")
def pattern_path(code: Annotated[str, PathParam(pattern=r"^[A-Z]{3}$")]) -> dict[str, str]:
    return {"code": code}


@shapes.get("/query")
def required_query(q: Annotated[str, Query(min_length=7)], page: int = 1) -> dict[str, str]:
    return {"q": q}


@shapes.get("/header")
def required_header(x_token: Annotated[str, Header()]) -> dict[str, str]:
    return {"token": x_token}


@shapes.get("/cookie")
def required_cookie(session: Annotated[str, Cookie()]) -> dict[str, str]:
    return {"session": session}


@shapes.post("/body")
def needs_body(body: Body) -> Body:
    return body


@shapes.delete("/things/{n}")
def delete_thing(n: int) -> dict[str, int]:
    return {"deleted": n}


@router.get("/nested/{n}")
async def nested(n: int) -> dict[str, int]:
    return {"n": n}


shapes.include_router(router)


# --- Styles and dependencies the inventory and the arms read ----------------------------------


def sync_dep() -> int:
    return 1


async def async_dep() -> int:
    return 2


def sync_yield() -> Iterator[int]:
    yield 3


INSIDE = {"now": 0, "most": 0}
INSIDE_LOCK = threading.Lock()


def counted_yield() -> Iterator[None]:
    """A `def` + `yield` dependency that counts how many requests are inside it at once."""
    with INSIDE_LOCK:
        INSIDE["now"] += 1
        INSIDE["most"] = max(INSIDE["most"], INSIDE["now"])
    try:
        time.sleep(0.05)
        yield
    finally:
        with INSIDE_LOCK:
            INSIDE["now"] -= 1


styles = FastAPI()


def on_loop() -> bool:
    """Whether the caller runs on the thread of a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@styles.get("/def")
def plain_def(
    a: Annotated[int, Depends(sync_dep)],
    b: Annotated[int, Depends(async_dep)],
    c: Annotated[int, Depends(sync_yield)],
) -> dict[str, bool]:
    return {"on_loop": on_loop()}


@styles.get("/async")
async def plain_async() -> dict[str, bool]:
    return {"on_loop": on_loop()}


@styles.get("/awaits")
async def awaits_something() -> dict[str, bool]:
    await asyncio.sleep(0.001)
    return {"on_loop": on_loop()}


@styles.get("/counted", dependencies=[Depends(counted_yield)])
def counted() -> dict[str, bool]:
    return {"on_loop": on_loop()}


# --- A dependency asked for twice, as apps do (`get_db` of the endpoint and of the user) ---------

cached = FastAPI()


class Bearer:
    """A class-instance dependency, as `OAuth2PasswordBearer` is."""

    async def __call__(self) -> str:
        return "token"


bearer = Bearer()


def current_user(
    db: Annotated[int, Depends(sync_yield)], token: Annotated[str, Depends(bearer)]
) -> str:
    return "user"


@cached.get("/twice")
def twice(
    db: Annotated[int, Depends(sync_yield)], user: Annotated[str, Depends(current_user)]
) -> dict[str, str]:
    return {"user": user}


@cached.get("/uncached")
def uncached(
    db: Annotated[int, Depends(sync_yield)],
    again: Annotated[int, Depends(sync_yield, use_cache=False)],
) -> dict[str, int]:
    return {"db": db + again}


# Each call of these dependencies is recorded, so a test can hold the inventory to what FastAPI
# really runs (its dependency cache: tests/test_probe_units.py).
CALLS: list[str] = []


def get_db() -> Iterator[str]:
    CALLS.append("get_db")
    yield "db"


def get_user(db: Annotated[str, Depends(get_db, use_cache=False)]) -> str:
    CALLS.append("get_user")
    return "user"


def other(user: Annotated[str, Depends(get_user)]) -> str:
    CALLS.append("other")
    return "other"


def dbfirst(db: Annotated[str, Depends(get_db, use_cache=False)]) -> str:
    CALLS.append("dbfirst")
    return "first"


@cached.get("/solved-again")
def solved_again(
    user: Annotated[str, Depends(get_user)], more: Annotated[str, Depends(other)]
) -> dict[str, str]:
    return {"user": user}


@cached.get("/stored-uncached")
def stored_uncached(
    first: Annotated[str, Depends(dbfirst)], db: Annotated[str, Depends(get_db)]
) -> dict[str, str]:
    return {"db": db}


# --- Routes the loop sampler and the probe's bad-input checks use ---------------------------------

faulty = FastAPI()


@faulty.get("/sleeps")
async def sleeps() -> dict[str, str]:
    time.sleep(0.06)  # line:sleeps
    return {"slept": "yes"}


@faulty.get("/awaits")
async def awaits_only() -> dict[str, str]:
    await asyncio.sleep(0.06)  # line:awaits
    return {"slept": "no"}


@faulty.get("/spins")
async def spins() -> dict[str, int]:
    total = 0
    for i in range(1_500_000):
        total += i % 7  # line:spins
    return {"total": total}


@faulty.get("/missing")
async def always_missing() -> dict[str, str]:
    raise HTTPException(404, "nothing here, ever")


@faulty.get("/fine")
async def fine() -> dict[str, str]:
    return {"ok": "yes"}


def make_app() -> FastAPI:
    """A factory (`--factory`)."""
    return faulty


NOT_AN_APP = {"routes": []}


def broken_import() -> None:
    raise RuntimeError("the app could not start its database")
