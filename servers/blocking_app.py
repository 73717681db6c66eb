"""`async def` endpoints calling blocking libraries: the anti-pattern, kept honest.

Every blocking call here runs on the event loop itself (no `run_in_threadpool`), so while one
request waits on the upstream or the database, the whole server waits with it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from sqlalchemy.orm import Session

from servers import common, db, errors, proxy, sse, streaming
from servers.common import (
    ItemId,
    PageLimit,
    PageOffset,
    WaitMs,
    configure_threadpool,
    create_app,
)
from servers.cpu import burn
from servers.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    CpuResult,
    Health,
    Hello,
    Item,
    ItemCreate,
)
from servers.settings import get_settings
from servers.sse import MEDIA_TYPE


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    configure_threadpool(settings)
    engine = db.make_engine(settings)
    with engine.begin() as conn:
        db.prepare(conn, settings.db_seed_rows, settings.db_reset)
    http = proxy.http_module(settings, sync=True)
    with http.Client(**proxy.client_kwargs(settings)) as client:
        app.state.http = client
        app.state.engine = engine
        app.state.sessions = db.sessions(engine, settings)
        app.state.stream = streaming.response_class(settings.stream_close)
        yield
    engine.dispose()


async def get_http(request: Request) -> httpx.Client:
    return request.app.state.http


async def admit() -> AsyncIterator[None]:
    """Held from a request's start until its response, stream included, is sent."""
    yield


async def get_session(request: Request) -> AsyncIterator[Session]:
    with request.app.state.sessions() as session:
        yield session


HttpDep = Annotated[httpx.Client, Depends(get_http)]
SessionDep = Annotated[Session, Depends(get_session, **db.session_depends(get_settings()))]

app = create_app(lifespan)


@app.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness."""
    return Health()


@app.get("/hello", response_model=Hello)
async def hello() -> Hello:
    """Trivial JSON, no I/O."""
    return Hello()


@app.get("/cpu", response_model=CpuResult)
async def cpu(n: Annotated[int, Query(ge=0, le=10_000)] = 1) -> CpuResult:
    """About `n` milliseconds of pure-Python CPU work."""
    return CpuResult(n=n, result=burn(n))


async def relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        for chunk in sse.whole_events(response.iter_bytes()):
            yield chunk
    except errors.TRANSPORT_ERRORS as exc:
        yield errors.sse_error(exc)
    finally:
        response.close()


@app.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=proxy.CHAT_RESPONSES,
    dependencies=proxy.admission(admit, get_settings()),
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, client: HttpDep
) -> Response:
    """Proxy an OpenAI chat completion to the upstream, streaming or not."""
    upstream = client.build_request(
        "POST",
        proxy.CHAT_PATH,
        json=proxy.upstream_payload(body),
        headers=proxy.forward_headers(request.headers),
    )
    response = client.send(upstream, stream=True)
    if response.is_error:
        content = response.read()
        response.close()
        raise errors.from_upstream_status(response.status_code, response.headers, content)
    if body.stream:
        return request.app.state.stream(relay(response), upstream=response, media_type=MEDIA_TYPE)
    try:
        return Response(response.read(), media_type="application/json")
    finally:
        response.close()


@app.get("/items/{item_id}", response_model=Item, responses=common.ITEM_RESPONSES)
async def read_item(item_id: ItemId, session: SessionDep, wait_ms: WaitMs = 0) -> Item:
    """One item by id; with `wait_ms`, its query waits that long in the database."""
    row = session.execute(db.select_item(item_id, wait_ms)).mappings().one_or_none()
    if row is None:
        raise HTTPException(404, f"item {item_id} not found")
    return Item.model_validate(row)


@app.get("/items", response_model=list[Item])
async def list_items(
    session: SessionDep,
    limit: PageLimit = 10,
    offset: PageOffset = 0,
) -> list[Item]:
    """A page of items in id order."""
    rows = session.execute(db.select_items(limit, offset)).mappings().all()
    return [Item.model_validate(row) for row in rows]


@app.post("/items", response_model=Item, status_code=201)
async def create_item(data: ItemCreate, session: SessionDep) -> Item:
    """Store a new item."""
    row = session.execute(db.insert_item(data)).mappings().one()
    session.commit()
    return Item.model_validate(row)
