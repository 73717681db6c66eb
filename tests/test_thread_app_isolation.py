"""tests/thread_app.py adds its routes to servers.sync_app's app when imported; no test module may
import it, or the parity tests sharing that pytest worker see two extra routes (a CI run did)."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_the_thread_app() -> None:
    importers = []
    for path in TESTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tests.thread_app":
                importers.append(path.name)
            if isinstance(node, ast.Import) and any(
                a.name == "tests.thread_app" for a in node.names
            ):
                importers.append(path.name)
    assert importers == []
