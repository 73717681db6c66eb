"""A small shop API with the faults people plant in FastAPI apps without meaning to.

Run it: `uvicorn examples.shop:app`. Probe it: `sync-async-lab probe examples.shop:app --out DIR`.
Each route is written as a tutorial or a hurried colleague would write it; the comment on each
says what is wrong with it (the probe is not told):

- `GET /products`: a trivial `def` (no I/O): FastAPI sends it to the threadpool for nothing.
- `GET /products/{product_id}`: `def` with the docs' `yield` session dependency, on a pool of
  two connections: under load every thread waits for a connection held by a request that waits
  for a thread (fastapi#12066).
- `GET /recommendations`: `async def` calling a blocking client (`time.sleep` stands for a sync
  SDK call of 30 ms): it holds the event loop for every other request.
- `GET /reports/daily`: `async def` doing about 25 ms of pure-Python arithmetic per request.
- `GET /stock`: `def` waiting 50 ms on a slow legacy backend: correct style, but 40 threads cap
  it at 800 requests/s.
- `GET /health`, `/categories`, `/search`, `/cart/{cart_id}`, `/version`: clean
  `async def` routes (one with a required query, one with an async dependency).
- `POST /orders`: takes a JSON body (the probe needs one from `--requests` to call it).
"""

import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

DB_PATH = Path(os.environ.get("SHOP_DB", Path(tempfile.gettempdir()) / "example-shop.sqlite3"))
engine = create_engine(
    f"sqlite:///{DB_PATH}",
    connect_args={"check_same_thread": False},
    pool_size=2,
    max_overflow=0,
)
SessionLocal = sessionmaker(engine)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int] = mapped_column(Integer)


class ProductOut(BaseModel):
    id: int
    name: str
    price_cents: int


class OrderIn(BaseModel):
    product_id: int
    quantity: int = 1


CATALOGUE = [ProductOut(id=i, name=f"product {i}", price_cents=100 * i) for i in range(1, 21)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    Base.metadata.create_all(engine)
    with SessionLocal() as session:
        if session.scalar(select(Product.id).limit(1)) is None:
            session.add_all(
                Product(id=p.id, name=p.name, price_cents=p.price_cents) for p in CATALOGUE
            )
            session.commit()
    yield
    engine.dispose()


app = FastAPI(title="example shop", lifespan=lifespan)


def get_session() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@app.get("/products", response_model=list[ProductOut])
def list_products() -> list[ProductOut]:
    """The catalogue (static)."""
    return CATALOGUE


@app.get("/products/{product_id}", response_model=ProductOut)
def read_product(product_id: int, session: SessionDep) -> ProductOut:
    """One product from the database."""
    product = session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, "no such product")
    return ProductOut(id=product.id, name=product.name, price_cents=product.price_cents)


@app.get("/recommendations")
async def recommendations(user_id: int = 1) -> dict[str, list[int]]:
    """Products a (slow, synchronous) recommendation service suggests."""
    time.sleep(0.03)  # the vendor's SDK has no async client
    return {"products": [user_id % 20 + 1, (user_id * 7) % 20 + 1]}


@app.get("/reports/daily")
async def daily_report() -> dict[str, int]:
    """Revenue totals, computed on every request."""
    total = 0
    for order in range(500_000):
        total += (order * 31) % 997
    return {"orders": 500_000, "revenue_cents": total}


@app.get("/stock")
def stock(sku: str = "A-1") -> dict[str, int | str]:
    """Stock level from the warehouse's legacy system."""
    time.sleep(0.05)  # a blocking call to a slow backend, rightly in a `def`
    return {"sku": sku, "available": 12}


@app.get("/health")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@app.post("/orders", status_code=201)
async def create_order(order: OrderIn) -> dict[str, int]:
    """Place an order."""
    return {"order_id": 1, "product_id": order.product_id, "quantity": order.quantity}


CATEGORIES = ["kitchen", "garden", "tools", "toys"]


async def current_user(x_user: str = "guest") -> str:
    """Who is asking (a header, defaulting to a guest)."""
    return x_user


@app.get("/categories")
async def categories() -> list[str]:
    """Every category."""
    return CATEGORIES


@app.get("/search", response_model=list[ProductOut])
async def search(q: Annotated[str, Query(min_length=2)]) -> list[ProductOut]:
    """Products whose name contains `q`."""
    return [p for p in CATALOGUE if q in p.name][:10]


@app.get("/cart/{cart_id}")
async def cart(cart_id: int, user: Annotated[str, Depends(current_user)]) -> dict[str, object]:
    """A user's cart."""
    return {"cart_id": cart_id, "user": user, "items": []}


@app.get("/version")
async def version() -> dict[str, str]:
    """The API's version."""
    return {"version": "1.0"}
