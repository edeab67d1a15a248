"""report.html of a backtest (#15): overview numbers, per-symbol and per-tier tables, the exposure-matched
benchmark, price panels with the trades' markers, a rounded trade table, and templates shipped as package data."""

from __future__ import annotations

import importlib.resources
import re
import shutil
import subprocess
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kronos_bot.backtest import backtest_tables as bt
from kronos_bot.backtest.benchmark import exposure_matched
from kronos_bot.backtest.charts import price_figure
from kronos_bot.backtest.formatting import money_text, percent_text, price_text, share_text
from kronos_bot.backtest.pages import TEMPLATES, environment
from kronos_bot.backtest.price_panels import price_panels
from kronos_bot.backtest.report import write_backtest_report
from kronos_bot.backtest.runner import BacktestRun, run_backtest
from kronos_bot.backtest.tables import Table, pairs_table
from tests.backtest_support import ScriptedForecaster, fixture_store, settings
from tests.conftest import REPO_ROOT
from tests.test_backtest_run import PERIOD, SYMBOLS
from tests.test_backtest_skill import wavy

PAGES = ("base.html.j2", "tables.html.j2", "backtest.html.j2", "evaluate.html.j2")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestRun, dict[str, Any], Path]:
    """One scripted 108 h run over two symbols (trades, some still open at the end) and its output files."""
    run = run_backtest(settings(SYMBOLS), fixture_store(SYMBOLS), PERIOD, forecaster=ScriptedForecaster(wavy))
    out = tmp_path_factory.mktemp("report")
    summary = write_backtest_report(run, out)
    assert any(p.is_open for p in run.positions) and any(not p.is_open for p in run.positions)
    return run, summary, out


def curves_of(run: BacktestRun, summary: dict[str, Any]) -> tuple[bt.Curve, bt.Curve, bt.Curve]:
    return bt.comparison_curves([float(p.equity) for p in run.equity], [float(v) for v in run.benchmark], summary)


def test_the_exposure_matched_benchmark_on_a_hand_checked_case() -> None:
    plain = [10_000.0, 11_000.0, 9_000.0]
    # a quarter invested: +10 % of 2500 = +250, then -10 % of 2500 = -250; the cash does not move
    assert exposure_matched(plain, 0.25) == [10_000.0, 10_250.0, 9_750.0]
    assert exposure_matched(plain, 0.0) == [10_000.0] * 3
    assert exposure_matched(plain, 1.0) == plain
    assert exposure_matched([], 0.5) == []


def test_prices_are_rounded_for_reading() -> None:
    assert price_text(Decimal("97546.964")) == "97,546.96"
    assert price_text(1) == "1.00"
    assert price_text(Decimal("0.403151475")) == "0.403151"  # 6 significant digits below $1
    assert price_text(0.0000123456789) == "0.0000123457"
    assert price_text(0) == "0" and price_text(None) == "n/a"
    assert money_text(Decimal("-6.5412"), signed=True) == "-6.54" and money_text(1234.5) == "1,234.50"
    assert percent_text(0.0123) == "+1.23 %" and share_text(0.5) == "50.0 %"


def test_the_overview_shows_realized_pnl_fees_exposure_and_win_rate_from_the_summary(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    run, summary, out = reported
    page = (out / "report.html").read_text()
    _, matched, _ = curves_of(run, summary)
    rows = dict(bt.overview_table(summary, matched).rows)
    assert rows["realized P&L (closed trades, after fees)"] == f"{float(summary['realized_pnl_usd']):+,.2f} USD"
    assert rows["fees (both legs, already inside P&L)"] == f"{float(summary['fees_usd']):,.2f} USD"
    fraction = summary["exposure"]["avg_invested_fraction"]
    assert 0 < fraction < 0.1  # $60 positions on a $10k account
    assert rows["exposure (average fraction of equity invested)"] == f"{100 * fraction:.2f} %"
    assert rows["win rate (closed trades with P&L > 0)"] == share_text(summary["trades"]["win_rate"])
    for name in ("realized P&amp;L (closed trades, after fees)", "exposure (average fraction of equity invested)"):
        assert name in page


def test_per_symbol_and_per_tier_tables_add_up_to_the_summary(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    run, summary, out = reported
    by_symbol = bt.group_table(run.positions, "symbol")
    body = {row[0]: row for row in by_symbol.rows}
    assert set(body) == {*SYMBOLS, "all"}
    closed = [p for p in run.positions if not p.is_open]
    for symbol in SYMBOLS:
        mine = [p for p in closed if p.symbol == symbol]
        assert body[symbol][1] == str(len(mine))
        assert body[symbol][4] == money_text(sum((p.pnl or Decimal(0) for p in mine), Decimal(0)), signed=True)
    total = body["all"]
    assert total[1] == str(summary["trades"]["closed"]) and total[2] == str(summary["trades"]["open_at_end"])
    assert total[3] == share_text(summary["trades"]["win_rate"])
    assert total[4] == money_text(Decimal(summary["realized_pnl_usd"]), signed=True)
    by_tier = bt.group_table(run.positions, "tier")
    assert by_tier.rows[-1][1:] == total[1:]  # the same trades, grouped otherwise
    page = (out / "report.html").read_text()
    assert "Realized P&amp;L per symbol" in page and "Realized P&amp;L per tier" in page
    assert "mean return per trade (higher is better)" in page


def test_the_strategy_is_compared_with_buy_and_hold_at_its_own_exposure(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    run, summary, out = reported
    strategy, matched, plain = curves_of(run, summary)
    fraction = summary["exposure"]["avg_invested_fraction"]
    assert plain.period_return == pytest.approx(summary["buy_and_hold"]["equal_weight"], abs=1e-6)
    assert matched.period_return == pytest.approx(fraction * summary["buy_and_hold"]["equal_weight"], abs=1e-6)
    assert strategy.period_return == pytest.approx(summary["period_return"], abs=1e-6)
    page = (out / "report.html").read_text()
    assert "buy &amp; hold at the strategy&#39;s exposure" in page
    assert "buy &amp; hold, equal weight, fully invested" in page
    assert percent_text(matched.period_return) in page


def test_each_symbol_gets_a_price_panel_with_its_entries_and_exits(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    run, _, out = reported
    panels = price_panels(run)
    assert [p.symbol for p in panels] == list(SYMBOLS)
    for panel in panels:
        mine = [p for p in run.positions if p.symbol == panel.symbol]
        assert [(m.time, m.price) for m in panel.entries] == [(p.entry_time, float(p.entry_price)) for p in mine]
        closed = [p for p in mine if not p.is_open]
        assert [(m.time, m.price) for m in panel.exits] == [(p.exit_time, float(p.exit_price or 0)) for p in closed]
        assert panel.open_at_end == len(mine) - len(closed)
        assert len(panel.times) == PERIOD.hours + 1 and panel.prices[0] == float(run.start_marks[panel.symbol] or 0)
    figure = price_figure(panels)
    for ax, panel in zip(figure.axes, panels, strict=True):
        drawn = {c.get_gid(): len(c.get_offsets()) for c in ax.collections}
        assert drawn == {"entries": len(panel.entries), "exits": len(panel.exits)}
    assert (out / "prices.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert panels[0].caption() in page and page.count("data:image/png;base64,") == 2


def test_the_trade_table_is_rounded_and_scrolls_inside_its_box(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    run, _, out = reported
    table = bt.trade_table(run.positions, run.end_marks)
    assert len(table.rows) == len(run.positions) and table.scroll
    columns = {name: i for i, name in enumerate(table.columns)}
    for row in table.rows:
        for name in ("entry price", "exit price"):
            assert re.fullmatch(r"[\d,]+\.\d{2}", row[columns[name]]), row  # BTC and ETH: 2 decimals
        assert re.fullmatch(r"0\.0*[1-9]\d{5}", row[columns["qty"]]), row  # below 1: 6 significant digits
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[columns["entry (UTC)"]])
    assert any(row[columns["exit reason"]] == "open" for row in table.rows)
    # Fits 1280 px: at 13 px a character is at most ~7.5 px wide, plus 12 px of padding and border per cell.
    widths = [max(len(c), *(len(r[i]) for r in table.rows)) for i, c in enumerate(table.columns)]
    assert sum(7.5 * w + 13 for w in widths) < 1280 - 48
    page = (out / "report.html").read_text()
    assert '<div class="scroll"><table>\n<thead><tr><th class="text">symbol</th><th class="text">tier</th>' in page
    assert "0.000" not in "".join(row[columns["entry price"]] for row in table.rows)


def test_the_page_is_self_contained_and_escapes_what_it_shows(
    reported: tuple[BacktestRun, dict[str, Any], Path],
) -> None:
    page = (reported[2] / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "max-width: 1280px" in page
    macro = environment().from_string('{% from "tables.html.j2" import table %}{{ table(t) }}')
    shown = macro.render(t=pairs_table([("reason", "<script>alert(1)</script> & more")]))
    assert "<script>" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in shown
    assert "none" in macro.render(t=Table(("a", "b"), []))


def test_templates_load_from_the_installed_package() -> None:
    folder = importlib.resources.files("kronos_bot.backtest").joinpath(TEMPLATES)
    assert {name for name in PAGES if folder.joinpath(name).is_file()} == set(PAGES)
    for name in PAGES:
        template = environment().get_template(name)
        assert template.filename is not None and Path(template.filename).name == name
    assert environment().autoescape is True
    # `pip install .` (scripts/install.sh) ships them: the package data names them, and jinja2 is a dependency.
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "**/*.j2" in project["tool"]["setuptools"]["package-data"]["kronos_bot"]
    assert any(d.replace(" ", "").startswith("jinja2>=") for d in project["project"]["dependencies"])


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed: no screenshot of the page")
def test_a_headless_browser_renders_the_page_at_1280_px(
    reported: tuple[BacktestRun, dict[str, Any], Path], tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    page = (reported[2] / "report.html").resolve()
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
         f"--screenshot={shot}", page.as_uri()],
        check=True,
        timeout=60,
        capture_output=True,
    )  # fmt: skip
    assert shot.read_bytes()[:4] == b"\x89PNG"
