"""The results contract: one module, its names checked against the servers and the readers."""

import re
from pathlib import Path

import pytest

import contract
from loadtests.scenarios import SCENARIOS
from servers.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def test_server_env_names_are_settings_fields() -> None:
    # A typo in a name the orchestrator passes to the servers fails here, not silently at runtime.
    fields = set(Settings.model_fields)
    assert set(contract.SERVER_ENV) <= fields, set(contract.SERVER_ENV) - fields
    prefix = Settings.model_config["env_prefix"]
    for name, variable in contract.SERVER_ENV.items():
        assert variable == f"{prefix}{name.upper()}"
    assert set(contract.SERVER_TIMEOUTS) <= fields


def test_scenarios_are_the_contracts() -> None:
    assert tuple(SCENARIOS) == contract.SCENARIOS


@pytest.mark.parametrize(("q", "n"), [(50, 20), (90, 100), (95, 200), (99, 1000), (100, 1)])
def test_min_samples(q: float, n: int) -> None:
    assert contract.min_samples(q) == n
    assert contract.supported(q, n) and not contract.supported(q, n - 1 if n > 1 else None)


def test_results_readme_documents_every_column_and_outcome() -> None:
    text = (REPO / "results" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    missing = [c for c in (*contract.SUMMARY_COLUMNS, *contract.RAW_COLUMNS) if c not in documented]
    assert not missing, f"results/README.md does not document {missing}"
    assert all(f"`{o}`" in text for o in contract.OUTCOMES)
