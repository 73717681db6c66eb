"""Whether a run holds every cell it planned: manifest.json `cells` against summary.csv's rows
and the cell folders (an interrupted or damaged run says what it lacks, results/README.md)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CELL_FILE = "cell.json"
# Cell ids listed by name in a sentence; the rest are counted.
SHOWN_IDS = 12


@dataclass(frozen=True)
class Completeness:
    """What a run lacks; nothing when it is complete.

    `missing`: planned cells (manifest.json `cells`) never measured: no summary.csv row and no
    cell.json; of those, `interrupted` have a folder (stopped mid-cell). `unsummarized`: cell
    folders with a cell.json but no summary.csv row (summary.csv was not rewritten after them).
    `last_session_interrupted`: the run's last session (manifest.json `sessions`) was interrupted
    and not resumed: what it had still to run (cells, capacity searches) is not there.
    """

    planned: int = 0
    missing: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    unsummarized: tuple[str, ...] = ()
    last_session_interrupted: bool = False

    @property
    def complete(self) -> bool:
        """True when nothing planned or measured is absent from summary.csv."""
        return not (self.missing or self.unsummarized or self.last_session_interrupted)

    def problems(self) -> list[str]:
        """One sentence per kind of gap, naming the cells (empty when complete)."""
        out = []
        if self.last_session_interrupted:
            out.append(
                "The run's last session was interrupted (Ctrl-C or SIGTERM) and not resumed: "
                "what it had still to run (cells, capacity searches) is not here."
            )
        if self.missing:
            stopped = (
                f"; {len(self.interrupted)} of them stopped mid-cell (a folder without "
                f"cell.json: {_ids(self.interrupted)})"
                if self.interrupted
                else ""
            )
            n = len(self.missing)
            out.append(
                f"{n} of the {self.planned} cells manifest.json plans {'was' if n == 1 else 'were'}"
                f" never measured (no summary.csv row, no cell.json): {_ids(self.missing)}"
                f"{stopped}. "
                "`python -m loadtests ... --resume` with the run's own options runs them."
            )
        if self.unsummarized:
            n = len(self.unsummarized)
            out.append(
                f"{n} cell {'folder holds' if n == 1 else 'folders hold'} a cell.json but no "
                f"summary.csv row (summary.csv was not rewritten after {'it' if n == 1 else 'them'}"
                f"): {_ids(self.unsummarized)}. "
                "`python -m loadtests ... --resume` rewrites summary.csv."
            )
        return out


def completeness(
    run: Path, planned: Sequence[str], rows: Iterable[str], sessions: object = ()
) -> Completeness:
    """Compare the planned cell ids and the cell folders of `run` with summary.csv's `rows`.

    `sessions`: manifest.json `sessions` (one per start or --resume; older runs lack the
    `interrupted` flag, read as not interrupted).
    """
    present = set(rows)
    measured = sorted(p.parent.name for p in run.glob(f"*/{CELL_FILE}"))
    unsummarized = tuple(c for c in measured if c not in present)
    missing = tuple(c for c in dict.fromkeys(planned) if c not in present and c not in unsummarized)
    interrupted = tuple(c for c in missing if (run / c).is_dir())
    last = sessions[-1] if isinstance(sessions, list) and sessions else {}
    stopped = isinstance(last, dict) and last.get("interrupted") is True
    return Completeness(len(set(planned)), missing, interrupted, unsummarized, stopped)


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(f"`{c}`" for c in ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
