"""The items table, its statements, seeding and engine construction, shared by every app.

Two databases, one set of statements: SQLite (embedded, the default: `sqlite3` in `sync` and
`blocking`, `aiosqlite` in `async`) and PostgreSQL when `db_url` is set (psycopg's sync API in
`sync` and `blocking`; psycopg's async API or asyncpg in `async`, `db_async_driver`). The
waiting query calls `pg_sleep`, which SQLite gets as a function registered on each connection,
so the same statement waits in the database on both.
"""

import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.dialects import postgresql
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

# SQLite's and PostgreSQL's (bigint) largest integer: a bigger id or offset is an overflow in
# the driver, not a miss.
MAX_INTEGER = 2**63 - 1
# The advisory lock servers take in turn to create and seed the table on PostgreSQL.
PREPARE_LOCK = 0x1AB

metadata = MetaData()

items = Table(
    "items",
    metadata,
    # bigint on PostgreSQL (ids up to MAX_INTEGER, as on SQLite); SQLite's rowid is INTEGER.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", String(2000)),
    Column("price", Float, nullable=False),
)


def select_item(item_id: int, wait_ms: int = 0) -> Select[Any]:
    """One item by primary key; with `wait_ms`, the query also waits that long in the database
    (`pg_sleep` in its select list, run for the row it finds, so a missing id does not wait):
    what a slow query costs a request, without costing the database CPU."""
    statement = select(items).where(items.c.id == item_id)
    if wait_ms:
        statement = statement.add_columns(func.pg_sleep(wait_ms / 1000).label("waited"))
    return statement


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
    # IF [NOT] EXISTS and OR IGNORE: several servers may share one file and start together;
    # on PostgreSQL concurrent CREATE TABLE IF NOT EXISTS can still collide: they take turns.
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(PREPARE_LOCK)))
    if reset:
        conn.execute(DropTable(items, if_exists=True))
    conn.execute(CreateTable(items, if_not_exists=True))
    if conn.execute(select(func.count()).select_from(items)).scalar_one() == 0 and seed:
        if conn.dialect.name == "postgresql":
            conn.execute(postgresql.insert(items).on_conflict_do_nothing(), seed_rows(seed))
            # The seeded ids were given: new rows must be numbered after them.
            conn.execute(select(func.setval(func.pg_get_serial_sequence("items", "id"), seed)))
        else:
            conn.execute(insert(items).prefix_with("OR IGNORE"), seed_rows(seed))


def _pool_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }


def _pg_sleep(seconds: float) -> None:
    time.sleep(seconds)  # in the connection's thread: the caller's in sqlite3, aiosqlite's own


def _on_connect_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # WAL lets readers run beside a writer; the busy timeout makes writers queue instead of
    # failing at once with "database is locked".
    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()
        dbapi_connection.create_function("pg_sleep", 1, _pg_sleep)


def driver(db_url: str, async_driver: str, sync: bool) -> str:
    """The database and driver an app runs, as SQLAlchemy names them (`dialect+driver`)."""
    if not db_url:
        return "sqlite+pysqlite" if sync else "sqlite+aiosqlite"
    return "postgresql+psycopg" if sync else f"postgresql+{async_driver}"


def url(settings: Settings, sync: bool) -> str:
    """The engine URL of an app's style."""
    name = driver(settings.db_url, settings.db_async_driver, sync)
    if not settings.db_url:
        return f"{name}:///{settings.db_path}"
    return name + settings.db_url.removeprefix("postgresql")


def make_engine(settings: Settings) -> Engine:
    """The sync engine (sqlite3, or psycopg's sync API)."""
    engine = create_engine(url(settings, sync=True), **_pool_kwargs(settings))
    if engine.dialect.name == "sqlite":
        _on_connect_sqlite(engine, settings.db_busy_timeout_ms)
    return engine


def make_async_engine(settings: Settings) -> AsyncEngine:
    """The async engine: aiosqlite (each connection runs sqlite3 on its own thread), psycopg's
    async API or asyncpg."""
    engine = create_async_engine(url(settings, sync=False), **_pool_kwargs(settings))
    if engine.dialect.name == "sqlite":
        _on_connect_sqlite(engine.sync_engine, settings.db_busy_timeout_ms)
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
