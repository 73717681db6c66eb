"""The probe on the example app (examples/shop.py), as the README runs it: every planted fault
named with its line and the right finding, nothing on the clean route. `--quick`, so it fits in
`make test`; the committed default run is results/reference/probe/."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "examples" / "shop.py"


def line_of(text: str) -> int:
    for number, line in enumerate(SHOP.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(text)


@pytest.mark.timeout(400)
def test_the_probe_names_every_planted_fault_of_the_example(tmp_path: Path) -> None:
    out = tmp_path / "run"
    routes = "/products,/products/{product_id},/recommendations,/reports/daily,/stock,/health"
    done = subprocess.run(
        [sys.executable, "-m", "probe", "probe", "examples.shop:app", "--quick", "--out", str(out)]
        + ["--routes", routes],
        capture_output=True,
        text=True,
        timeout=380,
        cwd=REPO,
        env={**os.environ, "SHOP_DB": str(tmp_path / "shop.sqlite3")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    with open(out / "routes.csv") as f:
        found = {r["path"]: r for r in csv.DictReader(f)}
    expected = {
        "/products/{product_id}": ("stalls", f"examples/shop.py:{line_of('def get_session(')}"),
        "/recommendations": ("blocks_loop", f"examples/shop.py:{line_of('time.sleep(0.03)')}"),
        "/reports/daily": ("blocks_loop", f"examples/shop.py:{line_of('total += (order')}"),
        "/stock": ("starves_threadpool", f"examples/shop.py:{line_of('def stock(')}"),
        "/products": ("flip_faster", f"examples/shop.py:{line_of('def list_products(')}"),
        "/health": ("ok", ""),
    }
    got = {path: (found[path]["finding"], found[path]["site"]) for path in expected}
    assert got == expected
    assert found["/recommendations"]["call"] == "time.sleep"
    assert "max_concurrency=2" in found["/products/{product_id}"]["advice"]
    assert found["/orders"]["finding"] == "not_probed"
    # --quick measured the app as written once at 200 users; the two findings that rest on a
    # lead over it (flip_faster, starves_threadpool) were measured again before being reported,
    # and only those.
    again = {p.parent.name.split("__")[0] for p in out.glob("*__u200__r2/cell.json")}
    assert again == {"get-products", "get-stock"}, again
