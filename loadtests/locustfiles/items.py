"""`items_read`, `items_write` and `items_wait`: the database through SQLAlchemy (sync or async)."""

import itertools
import random

from locust import FastHttpUser, task

from loadtests.locustfiles.common import back_to_back, expect, tracked

_names = itertools.count(1)


def _is_item(body: dict) -> bool:
    return isinstance(body["id"], int) and isinstance(body["name"], str) and body["price"] >= 0


class ItemsReadUser(FastHttpUser):
    """Reads one item by a random id back to back."""

    @task
    @back_to_back
    def read_item(self) -> None:
        """One GET /items/{id}."""
        item_id = random.randint(1, self.environment.parsed_options.seed_rows)
        with (
            tracked("GET /items/[id]"),
            self.client.get(f"/items/{item_id}", name="/items/[id]", catch_response=True) as r,
        ):
            expect(r, 200, lambda body: _is_item(body) and body["id"] == item_id)


class ItemsWaitUser(FastHttpUser):
    """Reads one item by a random id with a query that waits `--db-wait-ms` in the database."""

    @task
    @back_to_back
    def read_item_waiting(self) -> None:
        """One GET /items/{id}?wait_ms=."""
        opts = self.environment.parsed_options
        item_id = random.randint(1, opts.seed_rows)
        url = f"/items/{item_id}?wait_ms={opts.db_wait_ms}"
        with (
            tracked("GET /items/[id]?wait_ms"),
            self.client.get(url, name="/items/[id]?wait_ms", catch_response=True) as r,
        ):
            expect(r, 200, lambda body: _is_item(body) and body["id"] == item_id)


class ItemsWriteUser(FastHttpUser):
    """Creates items back to back."""

    @task
    @back_to_back
    def create_item(self) -> None:
        """One POST /items."""
        item = {"name": f"locust-{next(_names)}", "description": "written by Locust", "price": 9.5}
        with (
            tracked("POST /items"),
            self.client.post("/items", json=item, catch_response=True) as r,
        ):
            expect(r, 201, lambda body: _is_item(body) and body["name"] == item["name"])
