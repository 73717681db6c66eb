"""The README stays true to the code it describes."""

from pathlib import Path

from servers.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [n for n in Settings.model_fields if f"`LAB_{n.upper()}`" not in README]
    assert missing == []


def test_readme_shows_the_two_commands() -> None:
    assert "make bench" in README and "make test" in README
