"""Transforms and verdict rules on small hand-built frames whose right answer is known."""

import math

import pandas as pd
import pytest

from analysis.judge.caveats import caveats
from analysis.judge.noise import scenario_noise
from analysis.judge.repeats import safe_ratio
from analysis.judge.rules import (
    CONFIRMS,
    CONTRADICTS,
    MIXED,
    NOISE,
    NOT_MEASURED,
    Scene,
    rules_for,
)
from analysis.judge.transform import (
    MissingColumnError,
    aggregate,
    compared_users,
    ratio_with_spread,
    relative_spread,
    require_columns,
)
from analysis.judge.verdict import (
    compute_verdict,
    decide_verdicts,
    fmt_ratio,
    is_clear,
    leader_label,
)
from analysis.load import add_style
from analysis.plot.styles import colour
from analysis.vocabulary import ordered, style_of


def rows(scenario: str, spec: dict[tuple[str, str], list[float]], users: int = 50, **extra: object):
    """Summary rows: {(variant, client): [rps per repeat]}; p99 = 1000 * users / rps."""
    out = []
    for (variant, client), values in spec.items():
        for repeat, rps in enumerate(values, start=1):
            out.append(
                {
                    "scenario": scenario,
                    "variant": variant,
                    "client": client,
                    "users": users,
                    "repeat": repeat,
                    "rps": rps,
                    "p50_ms": 1000 * users / rps if rps else math.nan,
                    "p99_ms": 2000 * users / rps if rps else math.nan,
                    "status": "ok",
                    "valid": True,
                    "cell_id": f"{scenario}__{variant}-{client}__u{users:03d}__r{repeat}",
                    "reason": "",
                    "invalid_reason": "",
                    **extra,
                }
            )
    return out


def summary(*parts: list[dict]) -> pd.DataFrame:
    return add_style(pd.DataFrame([r for p in parts for r in p]))


def test_style_keys_and_palette() -> None:
    assert style_of("async", "httpx") == "async"
    assert style_of("async", "-") == "async"
    assert style_of("async", "aiohttp") == "async (aiohttp)"
    assert ordered(["blocking", "zeta", "async (aiohttp)", "sync"]) == [
        "sync",
        "async (aiohttp)",
        "blocking",
        "zeta",
    ]
    assert colour("sync") != colour("async") and colour("zeta") == colour("zeta")


def test_aggregate_median_and_spread_skip_invalid() -> None:
    s = summary(rows("chat", {("sync", "httpx"): [100.0, 110.0, 130.0]}))
    s.loc[2, "valid"] = False  # the 130 repeat is excluded
    agg = aggregate(s)
    assert len(agg) == 1
    row = agg.iloc[0]
    assert (row["rps"], row["rps_lo"], row["rps_hi"], row["repeats"]) == (105.0, 100.0, 110.0, 2)
    assert relative_spread(agg).iloc[0] == pytest.approx(10 / 105)


def test_ratio_spread_is_the_widest_range() -> None:
    a = pd.Series({"rps": 200.0, "rps_lo": 190.0, "rps_hi": 210.0})
    b = pd.Series({"rps": 100.0, "rps_lo": 95.0, "rps_hi": 105.0})
    mid, lo, hi = ratio_with_spread(a, b, "rps")
    assert (mid, lo, hi) == pytest.approx((2.0, 190 / 105, 210 / 95))
    assert safe_ratio(5, 0) == math.inf and math.isnan(safe_ratio(0, 0))


def test_require_columns_lists_available() -> None:
    with pytest.raises(MissingColumnError, match=r"lacks column\(s\) \['x'\]; available .*'a'"):
        require_columns(pd.DataFrame({"a": [1]}), ["a", "x"])


def test_is_clear_needs_threshold_and_separated_spreads() -> None:
    assert is_clear((1.5, 1.4, 1.6), 0.15)
    assert not is_clear((1.1, 1.05, 1.15), 0.15)  # inside the threshold
    assert not is_clear((1.5, 0.9, 2.0), 0.15)  # spreads overlap
    assert fmt_ratio((1.5, 1.4, 1.6)) == "x1.50 (1.40-1.60)"


def test_clear_winner() -> None:
    s = summary(rows("chat", {("sync", "httpx"): [600, 620], ("async", "aiohttp"): [2400, 2500]}))
    v = compute_verdict(aggregate(s), "chat", 0.10)
    assert v.clear and v.winners == ("async (aiohttp)",) and v.runner_up == "sync"
    assert v.ratio == pytest.approx((2450 / 610, 2400 / 620, 2500 / 600))
    assert v.tail_ratio[0] == pytest.approx(2450 / 610, rel=1e-3)  # median of 1/x, not 1/median
    assert "wins" in v.text and leader_label(v) == "async: async def + aiohttp"


def test_no_clear_winner_inside_noise() -> None:
    s = summary(rows("cpu", {("sync", "-"): [4800, 5000], ("async", "-"): [5200, 5400]}))
    agg = aggregate(s)
    noise = scenario_noise(agg, "cpu")
    # The run's own noise: the median of (max - min) / median over its cells, here 4.1% and
    # 3.8%, under the contract's 5% floor.
    assert noise.value == pytest.approx(0.05) and noise.cells == 2
    v = compute_verdict(agg, "cpu", noise)
    assert v.threshold == pytest.approx(0.05)
    # x1.08 is beyond the noise, but the interval (5200/5000 = 1.04 .. 5400/4800) is above
    # parity too: so a 30% noise (e.g. --noise) is what keeps this inside.
    assert v.clear
    v = compute_verdict(agg, "cpu", 0.30)
    assert not v.clear and v.winners == () and v.leader == "async"
    assert v.text.startswith("no clear winner") and leader_label(v) == "no clear winner"
    assert "inside the 30% noise" in v.text


def test_no_clear_winner_when_spreads_overlap() -> None:
    # Medians 30% apart, but one repeat of each says the opposite: not a result.
    s = summary(rows("chat", {("sync", "httpx"): [100, 160], ("async", "httpx"): [150, 240]}))
    v = compute_verdict(aggregate(s), "chat", 0.10)
    assert v.ratio[0] == pytest.approx(1.5) and not v.clear


def test_tied_styles_share_the_win() -> None:
    s = summary(
        rows(
            "hello",
            {
                ("sync", "-"): [4600, 4700],
                ("async", "-"): [8000, 8100],
                ("blocking", "-"): [7900, 8050],
            },
        )
    )
    v = compute_verdict(aggregate(s), "hello", 0.15, metric="rps")
    assert v.clear and v.winners == ("async", "blocking") and v.runner_up == "sync"


def test_verdict_uses_highest_load_with_two_valid_styles() -> None:
    s = summary(
        rows("chat", {("sync", "httpx"): [190, 195], ("async", "aiohttp"): [230, 235]}, users=50),
        rows("chat", {("sync", "httpx"): [190, 195], ("async", "aiohttp"): [900, 910]}, users=200),
    )
    s.loc[(s["users"] == 200) & (s["variant"] == "sync"), "status"] = "failed"
    agg = aggregate(s)
    assert compared_users(agg, "chat") == 50
    assert compute_verdict(agg, "chat", 0.1).users == 50
    # With a third style valid at 200 users, the verdict moves there and names the absent one.
    s = pd.concat([s, summary(rows("chat", {("blocking", "httpx"): [5, 5.1]}, users=200))])
    v = compute_verdict(aggregate(s), "chat", 0.1)
    assert v.users == 200 and "(`sync`: no counted cell at 200 users)" in v.text


def test_not_enough_data() -> None:
    s = summary(rows("cpu", {("sync", "-"): [390]}))
    v = compute_verdict(aggregate(s), "cpu", 0.15)
    assert v.users is None and v.leader is None and leader_label(v) == "n/a"


def scene(s: pd.DataFrame, scenario: str, noise: float = 0.1, metric: str = "rps") -> Scene:
    agg = aggregate(s)
    return Scene(scenario, int(agg["users"].max()), agg, noise, metric=metric)


def check(scenario: str, spec: dict, index: int = 0, **extra: object):
    s = summary(rows(scenario, spec, **extra))
    return rules_for(scenario)[index](scene(s, scenario))


def test_rule_async_library_depends_on_the_client() -> None:
    c = check(
        "chat",
        {
            ("sync", "httpx"): [655, 655],
            ("async", "httpx"): [205, 205],
            ("async", "aiohttp"): [2463, 2463],
        },
    )
    assert c.outcome == MIXED
    assert "`async` throughput x0.31 of `sync` (contradicts)" in c.detail
    assert "`async (aiohttp)` throughput x3.76 of `sync` (confirms)" in c.detail


def test_rule_blocking_collapses_to_one_over_latency() -> None:
    c = check(
        "chat",
        {("sync", "httpx"): [655, 660], ("blocking", "httpx"): [19, 19.5]},
        index=1,
        upstream_latency_ms=50.0,
    )
    assert c.outcome == CONFIRMS and "1 / latency = 20/s" in c.detail and "within ±35%" in c.detail


def test_rule_blocking_contradicted_when_blocking_is_as_fast() -> None:
    c = check("items_read", {("sync", "-"): [2000, 2010], ("blocking", "-"): [2600, 2610]}, index=1)
    assert c.outcome == CONTRADICTS
    # No upstream in a DB scenario: the 1 / latency part is said to be untested.
    assert "not tested: 'about 1 / latency'" in c.detail


def test_rule_trivial_endpoint_noise() -> None:
    two = {("sync", "-"): [5000, 5010], ("async", "-"): [5200, 5210]}
    assert check("hello", two).outcome == NOISE
    far = {("sync", "-"): [4900, 4910], ("async", "-"): [8900, 8910]}
    assert check("hello", far).outcome == CONFIRMS


def test_rule_aiosqlite_and_cpu() -> None:
    slow = {("sync", "-"): [2370, 2380], ("async", "-"): [1860, 1870]}
    assert check("items_read", slow).outcome == CONFIRMS
    equal = {("sync", "-"): [388, 389], ("async", "-"): [390, 391]}
    c = check("cpu", equal)
    # The throughput part holds; server CPU and loop lag are not in these rows: said so.
    assert c.outcome == CONFIRMS and "not tested: one piece of Python at a time" in c.detail
    c = check("cpu", equal, server_cpu_pct=99.0, loop_lag_max_ms=20.0)
    assert c.outcome == "partly confirms" and "stalls the loop: no" in c.detail
    assert check("cpu", {("sync", "-"): [388, 389]}).outcome == NOT_MEASURED


def test_rule_mixed_probe_stall() -> None:
    s = summary(
        rows("mixed", {("async", "-"): [900, 910]}, probe_p99_ms=3.0, probe_max_ms=4.0),
        rows("mixed", {("blocking", "-"): [5, 5]}, probe_p99_ms=1000.0, probe_max_ms=1200.0),
    )
    s["probe_requests"] = 5000
    c = rules_for("mixed")[0](scene(s, "mixed"))
    assert c.outcome == CONFIRMS and "probe p99" in c.detail and "x333" in c.detail
    # Too few probe requests for a p99: the contract left it empty (its sample rule), the probe
    # max decides, and the check says so.
    s["probe_requests"] = 300
    s["probe_p99_ms"] = math.nan
    c = rules_for("mixed")[0](scene(s, "mixed"))
    assert c.outcome == CONFIRMS and "probe max" in c.detail and "x300" in c.detail
    assert "probe p99 not used: n too small (n=300 probe requests" in c.detail


def test_caveats_list_excluded_saturated_and_spread() -> None:
    s = summary(
        rows("chat", {("sync", "httpx"): [100, 140], ("async", "httpx"): [100, 101]}),
        rows("chat", {("sync", "httpx"): [200, 201], ("async", "httpx"): [300, 302]}, users=10),
    )
    s["loadgen_cpu_pct"] = [50.0, 50.0, 95.0, 50.0, 50.0, 50.0, 50.0, 50.0]
    s.loc[1, "valid"] = False
    s.loc[1, "invalid_reason"] = "load generator above 90% CPU"
    kinds = [(c.kind, c.cell) for c in caveats(s, decide_verdicts(s))]
    assert ("invalid cell", "chat__sync-httpx__u050__r2") in kinds
    assert ("saturated load generator", "chat__async-httpx__u050__r1") in kinds
    assert ("one repeat", "chat / sync / 50 users") in kinds  # the other repeat is invalid
    assert all(k != "high run-to-run spread" for k, _ in kinds)
    s.loc[1, "valid"] = True
    # 40% between repeats, over twice the run's own noise (the median cell's spread).
    kinds = [c.kind for c in caveats(s, decide_verdicts(s))]
    assert "high run-to-run spread" in kinds


def test_style_that_completed_nothing_is_stalled_not_infinitely_slow() -> None:
    # MEASURED.md: a style can finish 0 requests in a window; flagged stalled, it is named.
    s = summary(rows("chat", {("sync", "httpx"): [655, 660], ("blocking", "httpx"): [0, 0]}))
    s["stalled"] = s["rps"] == 0
    s["stall_evidence"] = ["", "", "no completion for 14.2 s with 200 in flight", ""]
    (v,) = decide_verdicts(s).verdicts
    assert v.users is None and "inf" not in v.text and "∞" not in v.text
    assert "`blocking` stalled at 50 users in 2 of 2 repeats: no completion for 14.2 s" in v.text
    assert fmt_ratio((math.inf, math.inf, math.inf)) == "n/a (the other completed nothing)"
