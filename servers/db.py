"""The items table, its statements, seeding and engine construction, shared by every app."""

from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Insert,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateTable, DropTable

from servers.schemas import ItemCreate
from servers.settings import Settings

# SQLite's largest integer: a bigger id or offset is an overflow in the driver, not a miss.
MAX_INTEGER = 2**63 - 1

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", String(2000)),
    Column("price", Float, nullable=False),
)


def select_item(item_id: int) -> Select[Any]:
    """One item by primary key."""
    return select(items).where(items.c.id == item_id)


def select_items(limit: int, offset: int) -> Select[Any]:
    """A page of items in id order."""
    return select(items).order_by(items.c.id).limit(limit).offset(offset)


def insert_item(data: ItemCreate) -> Insert:
    """Insert one item and return the stored row."""
    return insert(items).values(**data.model_dump()).returning(*items.c)


def seed_rows(n: int) -> list[dict[str, Any]]:
    """The deterministic rows the table is seeded with."""
    return [
        {"id": i, "name": f"item-{i}", "description": f"seeded item {i}", "price": (i % 1000) / 10}
        for i in range(1, n + 1)
    ]


def prepare(conn: Connection, seed: int, reset: bool) -> None:
    """Create the table and seed it; with `reset`, drop what was there first."""
    # IF [NOT] EXISTS and OR IGNORE: several servers may share one file and start together.
    if reset:
        conn.execute(DropTable(items, if_exists=True))
    conn.execute(CreateTable(items, if_not_exists=True))
    if conn.execute(select(func.count()).select_from(items)).scalar_one() == 0 and seed:
        conn.execute(insert(items).prefix_with("OR IGNORE"), seed_rows(seed))


def _pool_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }


def _on_connect_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    # WAL lets readers run beside a writer; the busy timeout makes writers queue instead of
    # failing at once with "database is locked".
    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()


def make_engine(settings: Settings) -> Engine:
    """The sync engine (sqlite3 driver)."""
    engine = create_engine(f"sqlite:///{settings.db_path}", **_pool_kwargs(settings))
    _on_connect_pragmas(engine, settings.db_busy_timeout_ms)
    return engine


def make_async_engine(settings: Settings) -> AsyncEngine:
    """The async engine (aiosqlite driver: each connection runs sqlite3 on its own thread)."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{settings.db_path}", **_pool_kwargs(settings)
    )
    _on_connect_pragmas(engine.sync_engine, settings.db_busy_timeout_ms)
    return engine


# --- How long a request holds its session (`LAB_DB_SESSION`, `LAB_DB_MAX_CONCURRENCY`) ----------


def session_depends(settings: Settings) -> dict[str, Any]:
    """`Depends()` options of the session dependency: its scope and FastAPI's concurrency limit."""
    scope = "function" if settings.db_session == "function" else None
    return {"scope": scope, "max_concurrency": settings.db_max_concurrency}


class StatementSession:
    """A session opened and closed around each statement, inside the endpoint that runs it.

    The `statement` arm: the dependency hands this out and holds nothing; `execute` checks a
    connection out, runs one statement in its own transaction (committed), buffers the result
    and returns the connection before the endpoint goes on. The lab's handlers run one statement
    each, so this is the same as writing `with Session(engine) as s:` in every endpoint.
    """

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def execute(self, statement: Any) -> Result[Any]:
        with self._factory.begin() as session:
            return session.execute(statement).freeze()()

    def commit(self) -> None:
        """Nothing left to commit: each statement committed with its own session."""


class AsyncStatementSession:
    """`StatementSession` for the async engine."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    async def execute(self, statement: Any) -> Result[Any]:
        async with self._factory.begin() as session:
            return (await session.execute(statement)).freeze()()

    async def commit(self) -> None:
        """Nothing left to commit: each statement committed with its own session."""


def sessions(engine: Engine, settings: Settings) -> Any:
    """What `get_session` opens per request: a `Session`, or a `StatementSession` (no-op close)."""
    factory = sessionmaker(engine, expire_on_commit=False)
    if settings.db_session != "statement":
        return factory
    return lambda: _held(StatementSession(factory))


def async_sessions(engine: AsyncEngine, settings: Settings) -> Any:
    """`sessions` for the async engine."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    if settings.db_session != "statement":
        return factory
    return lambda: _held(AsyncStatementSession(factory))


def _held(value: Any) -> AbstractContextManager[Any] | AbstractAsyncContextManager[Any]:
    return nullcontext(value)  # usable with `with` and `async with` alike
