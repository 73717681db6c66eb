"""Issue 11's analysis: which HTTP client under each handler style, on synthetic summaries."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import contract  # noqa: E402
from analysis import vocabulary  # noqa: E402
from analysis.judge.clients import (  # noqa: E402
    FASTER,
    SLOWER,
    WITHIN,
    changes,
    client_noise,
    client_scenarios,
    client_table,
    sentence,
)
from analysis.load import load_run  # noqa: E402
from analysis.plot import styles  # noqa: E402
from analysis.plot.clients import plot_clients  # noqa: E402
from analysis.report.build import write_report  # noqa: E402
from analysis.sections.clients import HEADING, SECTION, scenario_table  # noqa: E402
from analysis.sections.registry import blocks_of  # noqa: E402
from tests.analysis_fixtures import (  # noqa: E402
    client_plan,
    clients_run_rows,
    section_charts_only,
    write_clients_run,
    write_run,
)
from tests.test_analysis_stalls import frame  # noqa: E402


def row(table, scenario: str, variant: str, client: str):  # noqa: ANN001, ANN201
    part = table[
        (table["scenario"] == scenario)
        & (table["variant"] == variant)
        & (table["client"] == client)
    ]
    assert len(part) == 1, part
    return part.iloc[0]


def test_every_style_and_client_has_its_own_colour_and_label() -> None:
    pairs = {vocabulary.style_of(v, c) for v in ("sync", "async") for c in contract.SYNC_CLIENTS}
    pairs.add(vocabulary.style_of("async", "aiohttp"))
    assert pairs <= set(styles.PALETTE)
    assert len({styles.colour(s) for s in pairs}) == len(pairs)
    assert vocabulary.label("async (httpx2)") == "async: async def + httpx2"
    assert vocabulary.label("async (aiohttp)") == "async: async def + aiohttp"
    assert vocabulary.label("sync (httpx2)") == "sync: def + httpx2"
    assert vocabulary.ordered(["async (aiohttp)", "async (httpx2)", "async", "sync"]) == [
        "sync",
        "async",
        "async (httpx2)",
        "async (aiohttp)",
    ]


def test_table_numbers_are_medians_min_max_and_ratios_to_def_httpx() -> None:
    table = client_table(frame(clients_run_rows()))
    assert list(dict.fromkeys(table["scenario"])) == ["chat", "chat_stream", "mixed"]
    chat = table[table["scenario"] == "chat"]
    assert list(zip(chat["variant"], chat["client"], strict=True)) == [
        ("sync", "httpx"),
        ("sync", "httpx2"),
        ("async", "httpx"),
        ("async", "httpx2"),
        ("async", "aiohttp"),
    ]
    base = row(table, "chat", "sync", "httpx")
    assert base["baseline"] and base["ratio"] == 1.0
    assert (base["rps"], base["rps_lo"], base["rps_hi"]) == (190.0, 180.0, 200.0)
    assert base["rps_text"] == "190/s (180/s–200/s)"
    aio = row(table, "chat", "async", "aiohttp")
    assert aio["rps"] == 900.0
    assert aio["ratio"] == pytest.approx(900 / 190)
    # The interval the verdicts use: min over max, max over min.
    assert aio["ratio_lo"] == pytest.approx(880 / 200)
    assert aio["ratio_hi"] == pytest.approx(930 / 180)
    assert aio["cpu_ms_per_req"] == pytest.approx(600 / 900, rel=1e-3)
    assert aio["p99_ms"] == pytest.approx(200 / 900 * 1000 * 2, rel=1e-3)
    assert aio["counted"] == 3 and aio["flags"] == ""
    assert int(aio["users"]) == 200


def test_excluded_repeats_are_flagged_and_not_in_the_medians() -> None:
    rows = clients_run_rows()
    for r in rows:
        if (r["scenario"], r["variant"], r["client"]) == ("chat", "async", "httpx2"):
            if r["repeat"] == 1:
                r.update(stalled=True)
            if r["repeat"] == 2:
                r.update(steady=False)
    cell = row(client_table(frame(rows)), "chat", "async", "httpx2")
    assert cell["counted"] == 1
    assert cell["flags"] == "1 of 3 stalled; 1 of 3 not steady"
    assert cell["rps"] == 640.0
    md = scenario_table(client_table(frame(rows)), "chat")
    assert ["`async def`", "httpx2"] == md.rows[3][:2]
    assert md.rows[3][-1] == "1 of 3 counted; 1 of 3 stalled; 1 of 3 not steady"


def test_chat_stream_def_rows_come_from_the_stream_fix_arm() -> None:
    rows = clients_run_rows()
    # A base `def` chat_stream cell (skipped in clients.toml) that deadlocked: not shown.
    stalled = clients_run_rows({("chat_stream", "sync", "httpx", ""): (5.0, 5.0, 5.0)})
    for r in stalled:
        r.update(stalled=True)
    table = client_table(frame(rows + stalled))
    stream = table[table["scenario"] == "chat_stream"]
    defs = stream[stream["variant"] == "sync"]
    assert list(defs["arm"]) == ["stream_fix", "stream_fix"]
    assert list(defs["label"]) == [
        "`def` + httpx (with the stream fix)",
        "`def` + httpx2 (with the stream fix)",
    ]
    assert defs.iloc[0]["baseline"] and defs.iloc[0]["rps"] == 190.0
    assert set(stream.loc[stream["variant"] == "async", "arm"]) == {""}
    md = scenario_table(table, "chat_stream")
    assert md.rows[0][:2] == ["`def` (with the stream fix)", "httpx"]
    assert md.rows[0][5] == "baseline"
    text = sentence(table, "chat_stream", 0.05)
    assert "with `def` and the stream fix, httpx2" in text
    # Elsewhere `def` is the plain app.
    assert row(table, "chat", "sync", "httpx")["label"] == "`def` + httpx"


def _async_httpx2(values: tuple[float, ...]) -> list[dict]:
    plan = client_plan()
    plan[("chat", "async", "httpx2", "")] = values
    return clients_run_rows({k: v for k, v in plan.items() if k[0] == "chat"})


def test_sentence_follows_the_numbers_beyond_and_within_noise() -> None:
    # httpx2 4x httpx under `async def`: beyond the noise.
    table = client_table(frame(_async_httpx2((600.0, 620.0, 640.0))))
    text = sentence(table, "chat", 0.05)
    assert text.startswith(
        "`chat` at 200 users: the fastest pair is `async def` + aiohttp at 900/s"
    )
    assert "with `async def`, httpx2 is faster than httpx beyond the noise (x4.00" in text
    assert "with `def`, httpx2 does not change throughput beyond the run's 5% noise" in text
    assert {(c.variant, c.client): c.outcome for c in changes(table, "chat", 0.05)} == {
        ("sync", "httpx2"): WITHIN,
        ("async", "httpx2"): FASTER,
        ("async", "aiohttp"): FASTER,
    }
    # httpx2 as fast as httpx (within 3%, overlapping repeats): within the noise.
    table = client_table(frame(_async_httpx2((152.0, 157.0, 161.0))))
    text = sentence(table, "chat", 0.05)
    assert "with `async def`, httpx2 does not change throughput beyond the run's 5% noise" in text
    # Slower beyond the noise, and now `def` + httpx2 is not the fastest either.
    table = client_table(frame(_async_httpx2((100.0, 104.0, 108.0))))
    assert "httpx2 is slower than httpx beyond the noise" in sentence(table, "chat", 0.05)
    outcome = {(c.variant, c.client): c.outcome for c in changes(table, "chat", 0.05)}
    assert outcome[("async", "httpx2")] == SLOWER
    # The same 4% lead is beyond a 2% noise only if the intervals clear parity too.
    table = client_table(frame(_async_httpx2((161.0, 162.0, 163.0))))
    assert {c.client: c.outcome for c in changes(table, "chat", 0.02) if c.variant == "async"}[
        "httpx2"
    ] == FASTER
    assert {c.client: c.outcome for c in changes(table, "chat", 0.05) if c.variant == "async"}[
        "httpx2"
    ] == WITHIN


def test_fastest_pair_follows_the_numbers() -> None:
    table = client_table(frame(_async_httpx2((1000.0, 1010.0, 1020.0))))
    text = sentence(table, "chat", 0.05)
    assert (
        "the fastest pair is `async def` + httpx2 at 1,010/s, ahead of `async def` + aiohttp"
        in text
    )


def test_noise_is_the_verdicts_rule() -> None:
    s = frame(clients_run_rows())
    noise = client_noise(s, "chat")
    assert noise.value >= contract.MIN_NOISE
    assert noise.cells == 5
    # The spread (max - min) / median of each row: 20/190, 19/192, 10/155, 40/620, 50/900.
    spreads = sorted([20 / 190, 19 / 192, 10 / 155, 40 / 620, 50 / 900])
    assert noise.measured == pytest.approx(spreads[2])


def test_one_repeat_has_no_interval() -> None:
    plan = {k: v[:1] for k, v in client_plan().items() if k[0] == "chat"}
    table = client_table(frame(clients_run_rows(plan)))
    text = sentence(table, "chat", 0.05)
    assert "one counted repeat, no interval" in text
    assert "beyond the noise" not in text.split("the fastest pair")[1].split(";", 1)[1]


def test_section_absent_with_one_client_per_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default fixture run (`make bench`): httpx for `def`, httpx and aiohttp for `async def`;
    # aiohttp is a verdict style there, not a client comparison.
    run = load_run(write_run(tmp_path, raw=False))
    assert client_scenarios(run.summary) == []
    assert blocks_of(SECTION, run) == []
    # One client per style: nothing.
    plan = {k: v for k, v in client_plan().items() if k[2] == "httpx"}
    assert client_scenarios(frame(clients_run_rows(plan))) == []
    single = tmp_path / "single"
    run = load_run(write_clients_run(single, clients_run_rows(plan)))
    assert blocks_of(SECTION, run) == []
    section_charts_only(monkeypatch)
    md = write_report(run.path, reference=None).markdown.read_text()
    assert f"## {HEADING}" not in md
    assert not (run.path / "charts" / "clients.png").exists()


def test_report_has_the_section_tables_sentences_and_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_charts_only(monkeypatch)
    run_dir = write_clients_run(tmp_path)
    files = write_report(run_dir, reference=None)
    md = files.markdown.read_text()
    section = md[md.index(f"## {HEADING}") :]
    section = section[: section.index("\n## ", 5)]
    for s in ("chat", "chat_stream", "mixed"):
        assert f"### `{s}`" in section
        assert f"`{s}` at 200 users: the fastest pair is" in section
    assert section.count("| style | client | req/s | p99 | CPU/req | x `def`+httpx |") == 3
    assert "| `def` (with the stream fix) | httpx | 190/s (180/s–200/s) |" in section
    assert "| `async def` | aiohttp | 900/s (880/s–930/s) |" in section
    assert "](charts/clients.png)" in section
    assert (run_dir / "charts" / "clients.png").exists()
    assert run_dir / "charts" / "clients.png" in files.charts
    assert "The noise: " in section


def test_chart_is_titled_labelled_and_coloured_by_style() -> None:
    table = client_table(frame(clients_run_rows()))
    fig, (top, bottom) = plt.subplots(2, 1)
    plot_clients(top, table, "chat_stream", "rps")
    plot_clients(bottom, table, "chat_stream", "cpu_ms_per_req")
    assert top.get_title() == "chat_stream at 200 users: throughput"
    assert "requests/s" in top.get_xlabel()
    assert "(ms)" in bottom.get_xlabel() and "CPU" in bottom.get_title()
    labels = [t.get_text() for t in top.get_yticklabels()]
    assert labels[0] == "def + httpx (with the stream fix)"  # no Markdown in a chart
    assert len(labels) == 5
    colours = [matplotlib.colors.to_hex(p.get_facecolor()).upper() for p in top.patches]
    assert colours == [
        styles.colour(s) for s in ("sync", "sync (httpx2)", "async", "async (httpx2)")
    ] + [styles.colour("async (aiohttp)")]
    assert len(set(colours)) == 5
    widths = [p.get_width() for p in top.patches]
    assert widths == [190.0, 192.0, 155.0, 620.0, 900.0]
    assert not any(math.isnan(w) for w in widths)
    plt.close(fig)


def test_no_proxy_cell_no_section() -> None:
    plan = {k: v for k, v in client_plan().items() if k[0] == "mixed" and k[2] == "httpx"}
    rows = clients_run_rows(plan)
    for r in rows:
        r["client"] = "-"
    assert client_scenarios(frame(rows)) == []
    assert client_table(frame(rows)).empty
