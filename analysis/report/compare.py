"""Compare two runs cell by cell: ratios B / A of throughput and p99, noise-marked, plus a chart."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, as in analysis.plot.charts

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

import contract  # noqa: E402
from analysis.document import (  # noqa: E402
    Block,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from analysis.judge.quiet import (  # noqa: E402
    CALIBRATION_NAMES,
    Calibration,
    calibration,
    comparability,
)
from analysis.judge.transform import GROUP, ratio_with_spread, require_columns  # noqa: E402
from analysis.judge.verdict import (  # noqa: E402
    MIN_REPEATS,
    Verdict,
    decide_verdicts,
    fmt_ratio,
    invert,
    is_clear,
    leader_label,
)
from analysis.load.run import load_run  # noqa: E402
from analysis.report.trust import completeness_blocks  # noqa: E402
from analysis.vocabulary import STYLES  # noqa: E402

UP, DOWN, NOISE = "up", "down", "noise"
ONE_REPEAT = "one repeat"
TOO_FEW = "n too small"
# Without a measured noise (e.g. a hand-built frame), the contract's floor.
FALLBACK_NOISE = contract.MIN_NOISE
# log2 of the ratio is clipped here so one huge change does not wash out the colours.
CLIP_LOG2 = 2.0


@dataclass(frozen=True)
class CompareFiles:
    """Where a comparison was written."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    chart: Path
    # What either run lacks (load.completeness), one sentence each, naming the run.
    incomplete: tuple[str, ...] = ()


def compare_frames(
    a: pd.DataFrame, b: pd.DataFrame, noise: float | dict[str, float] | None = None
) -> pd.DataFrame:
    """Per cell present in both aggregates: B / A for rps and p99 with spread and direction.

    `noise` is one threshold, or one per scenario (the larger of the two runs' own noise).
    """
    for frame, name in ((a, "run A"), (b, "run B")):
        require_columns(frame, [*GROUP, "rps", "rps_lo", "rps_hi", "p99_ms"], f"{name} aggregate")
    both = a.merge(b, on=list(GROUP), suffixes=("_a", "_b"))
    records = []
    for _, row in both.iterrows():
        scenario = str(row["scenario"])
        if isinstance(noise, dict):
            threshold = noise.get(scenario, FALLBACK_NOISE)
        else:
            threshold = FALLBACK_NOISE if noise is None else noise
        record: dict[str, object] = {k: row[k] for k in GROUP}
        repeats = [row.get(f"repeats_{x}", MIN_REPEATS) for x in ("a", "b")]
        for metric in ("rps", "p99_ms"):
            num = pd.Series({m: row[f"{m}_b"] for m in (metric, f"{metric}_lo", f"{metric}_hi")})
            den = pd.Series({m: row[f"{m}_a"] for m in (metric, f"{metric}_lo", f"{metric}_hi")})
            ratio = ratio_with_spread(num, den, metric)
            record[f"{metric}_a"] = row[f"{metric}_a"]
            record[f"{metric}_b"] = row[f"{metric}_b"]
            (
                record[f"{metric}_ratio"],
                record[f"{metric}_ratio_lo"],
                record[f"{metric}_ratio_hi"],
            ) = ratio
            change = direction(ratio, threshold)
            if min(int(r) for r in repeats) < MIN_REPEATS:
                change = ONE_REPEAT
            # The sample rule left a p99 empty (in some repeat) in either run.
            if metric == "p99_ms" and any(pd.isna(row[f"p99_ms_{x}"]) for x in ("a", "b")):
                change = TOO_FEW
            record[f"{metric}_change"] = change
        record["threshold"] = threshold
        records.append(record)
    columns = [
        *GROUP,
        *(
            f"{m}_{s}"
            for m in ("rps", "p99_ms")
            for s in ("a", "b", "ratio", "ratio_lo", "ratio_hi", "change")
        ),
        "threshold",
    ]
    out = pd.DataFrame.from_records(records, columns=columns)
    rank = {s: i for i, s in enumerate(STYLES)}
    out["_rank"] = out["style"].map(lambda s: rank.get(s, len(rank)))
    return (
        out.sort_values(["scenario", "_rank", "users"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def direction(ratio: tuple[float, float, float], threshold: float) -> str:
    """`up` / `down` when B differs from A beyond the noise and the spreads, else `noise`."""
    if is_clear(ratio, threshold):
        return UP
    if not math.isnan(ratio[0]) and ratio[0] > 0 and is_clear(invert(ratio), threshold):
        return DOWN
    return NOISE


def unmatched(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Cells valid in only A and only B, as `scenario / style / users` labels."""
    keys_a = {tuple(r) for r in a[list(GROUP)].itertuples(index=False)}
    keys_b = {tuple(r) for r in b[list(GROUP)].itertuples(index=False)}

    def fmt(keys: set[tuple[object, ...]]) -> list[str]:
        return [f"{s} / {st} / {u} users" for s, st, u in sorted(keys, key=str)]

    return fmt(keys_a - keys_b), fmt(keys_b - keys_a)


def plot_change(ax: Axes, table: pd.DataFrame, metric: str = "rps") -> Axes:
    """Heatmap of B / A per scenario x style (rows) and users (columns); `~` marks noise."""
    require_columns(table, [*GROUP, f"{metric}_ratio", f"{metric}_change"], "comparison")
    table = table.assign(row=table["scenario"] + " / " + table["style"])
    rows = list(dict.fromkeys(table["row"]))
    users = sorted(table["users"].unique())
    grid = np.full((len(rows), len(users)), np.nan)
    for r in table.itertuples():
        ratio = getattr(r, f"{metric}_ratio")
        if ratio > 0 and math.isfinite(ratio):
            grid[rows.index(r.row), users.index(r.users)] = np.log2(ratio)
    # Green = better in B: higher throughput, or lower p99.
    cmap = "RdYlGn" if metric == "rps" else "RdYlGn_r"
    image = ax.imshow(
        np.clip(grid, -CLIP_LOG2, CLIP_LOG2),
        cmap=cmap,
        norm=TwoSlopeNorm(0, -CLIP_LOG2, CLIP_LOG2),
        aspect="auto",
    )
    for r in table.itertuples():
        ratio = getattr(r, f"{metric}_ratio")
        noisy = getattr(r, f"{metric}_change") == NOISE
        text = "n/a" if math.isnan(ratio) else f"{'~' if noisy else ''}x{ratio:.2f}"
        ax.text(
            users.index(r.users),
            rows.index(r.row),
            text,
            ha="center",
            va="center",
            fontsize="small",
            color="0.35" if noisy else "black",
        )
    ax.set_xticks(range(len(users)), [str(u) for u in users])
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("scenario / style")
    what = "throughput" if metric == "rps" else "p99 latency"
    ax.set_title(f"{what}: run B / run A (~ = inside the noise)")
    colorbar = ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(-CLIP_LOG2, CLIP_LOG2 + 1)
    colorbar.set_ticks(ticks, labels=[f"x{2**t:g}" for t in ticks])
    colorbar.set_label(f"{what} ratio B / A (log scale, clipped)")
    return ax


def verdict_agreement(a: Sequence[Verdict], b: Sequence[Verdict]) -> list[list[str]]:
    """One row per scenario judged in either run: each run's winner and whether they agree.

    Two verdicts agree when they name the same winner(s), or both say "no clear winner"; the
    load they were judged at is shown, since a flag can move a verdict to another load.
    """
    by_a, by_b = {v.scenario: v for v in a}, {v.scenario: v for v in b}
    rows = []
    for scenario in [*by_a, *(s for s in by_b if s not in by_a)]:
        va, vb = by_a.get(scenario), by_b.get(scenario)
        cells = []
        for v in (va, vb):
            cells += ["-", "not judged"] if v is None else [str(v.users or "-"), leader_label(v)]
        same = va is not None and vb is not None and leader_label(va) == leader_label(vb)
        rows.append([f"`{scenario}`", *cells, "same" if same else "**differs**"])
    return rows


def write_compare(
    run_a: Path | str,
    run_b: Path | str,
    out_dir: Path | str | None = None,
    noise: float | None = None,
) -> CompareFiles:
    """Load both runs and write compare.md, compare.html, compare.csv and compare.png."""
    a, b = load_run(run_a), load_run(run_b)
    decided_a, decided_b = decide_verdicts(a.summary, noise), decide_verdicts(b.summary, noise)
    agg_a, agg_b = decided_a.agg, decided_b.agg
    noises = {
        s: max(n.value, decided_b.noises[s].value if s in decided_b.noises else n.value)
        for s, n in decided_a.noises.items()
    }
    noises |= {s: n.value for s, n in decided_b.noises.items() if s not in noises}
    table = compare_frames(agg_a, agg_b, noises)
    out = Path(out_dir) if out_dir is not None else b.path / f"compare-vs-{a.name}"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "compare.csv"
    table.to_csv(csv_path, index=False)
    chart = out / "compare.png"
    height = 1.5 + 0.35 * max(table["scenario"].str.cat(table["style"]).nunique(), 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), layout="constrained")
    if table.empty:
        for ax in (left, right):
            ax.set_axis_off()
            ax.set_title("no cell is valid in both runs")
    else:
        plot_change(left, table, "rps")
        plot_change(right, table, "p99_ms")
    fig.savefig(chart, dpi=110)
    plt.close(fig)
    only_a, only_b = unmatched(agg_a, agg_b)
    cal_a, cal_b = calibration(a.manifest), calibration(b.manifest)
    sentence = comparability(cal_a, cal_b, a.name, b.name)
    blocks: list[Block] = [
        Heading(f"Run `{b.name}` (B) against `{a.name}` (A)", 1),
        # An incomplete run says so first: a cell only one run has is not a change.
        *completeness_blocks(a.completeness, f"run A `{a.name}`"),
        *completeness_blocks(b.completeness, f"run B `{b.name}`"),
        Heading("Are the two runs comparable?"),
        Paragraph(f"**{sentence[0].upper() + sentence[1:]}.**"),
        *calibration_tables(((a.name, cal_a), (b.name, cal_b))),
        Heading("Do the verdicts agree?"),
        Table(
            ["scenario", "users A", "winner A", "users B", "winner B", "agree"],
            agreement := verdict_agreement(decided_a.verdicts, decided_b.verdicts),
        ),
        Paragraph(
            f"{sum(r[-1] == 'same' for r in agreement)} of {len(agreement)} verdicts agree "
            "(the same winner, or both no clear winner)."
        ),
        Heading("Cell by cell"),
        Paragraph(
            "Ratios are B / A of the medians over usable repeats, with the widest range the "
            "min-max spreads allow. A change counts only beyond the scenario's noise threshold "
            "(the larger of the two runs' own repeat spread, floor 5%) and outside the spreads; "
            "otherwise it is marked `noise`; `one repeat` has no interval; a p99 either run's n "
            "does not support is marked `n too small`. For p99, `down` is better."
        ),
        Image(chart, "throughput and p99 change per cell"),
        Table(
            [
                "scenario",
                "style",
                "users",
                "rps A",
                "rps B",
                "rps B / A",
                "change",
                "p99 A",
                "p99 B",
                "p99 B / A",
                "change",
            ],
            [_row(r) for _, r in table.iterrows()],
        ),
    ]
    if only_a or only_b:
        blocks.append(
            Paragraph(
                f"Valid only in A: {', '.join(only_a) or 'none'}. "
                f"Valid only in B: {', '.join(only_b) or 'none'}."
            )
        )
    md = out / "compare.md"
    page = out / "compare.html"
    md.write_text(to_markdown(blocks, out), encoding="utf-8")
    page.write_text(to_html(blocks, f"{b.name} vs {a.name}"), encoding="utf-8")
    incomplete = tuple(
        f"run {which} {run.name} is incomplete: {problem}"
        for which, run in (("A", a), ("B", b))
        for problem in run.completeness.problems()
    )
    return CompareFiles(out, md, page, csv_path, chart, incomplete)


def calibration_tables(runs: tuple[tuple[str, Calibration | None], ...]) -> list[Block]:
    """Each run's calibration figures, or a line saying it recorded none."""
    out: list[Block] = []
    for name, cal in runs:
        if cal is None:
            out.append(Paragraph(f"`{name}`: no calibration recorded."))
            continue
        keys = cal.keys
        rows = [
            [str(e.get("label", i)), *(_figure(e.get(k)) for k in keys)]
            for i, e in enumerate(cal.entries)
        ]
        rows.append(["median", *(_figure(cal.typical(k)) for k in keys)])
        out.append(Table([f"`{name}`", *(CALIBRATION_NAMES.get(k, k) for k in keys)], rows))
    return out


def _figure(x: object) -> str:
    if not isinstance(x, int | float) or isinstance(x, bool) or math.isnan(x):
        return "-"
    return f"{x:,.0f}"


def _row(r: pd.Series) -> list[str]:
    def ratio(metric: str) -> str:
        return fmt_ratio((r[f"{metric}_ratio"], r[f"{metric}_ratio_lo"], r[f"{metric}_ratio_hi"]))

    return [
        f"`{r['scenario']}`",
        str(r["style"]),
        str(r["users"]),
        f"{r['rps_a']:,.1f}",
        f"{r['rps_b']:,.1f}",
        ratio("rps"),
        str(r["rps_change"]),
        f"{r['p99_ms_a']:,.1f} ms",
        f"{r['p99_ms_b']:,.1f} ms",
        ratio("p99_ms"),
        str(r["p99_ms_change"]),
    ]
