"""Backtests and forecast evaluation on history, with the code that trades.

Why a package of small modules: a backtest is only worth something if it decides exactly like the daemon,
so nothing here re-implements a rule. The pieces, in the order a run uses them:

  period.py         the replayed hours (`--from` / `--to`)
  options.py        the config the run uses: the loaded settings + CLI overrides, sim broker forced
  data.py           bars per symbol (CSV directory or Alpaca + a CSV cache) and look-ahead-safe slicing
  news_archive.py   an optional JSONL news archive served through the live `NewsFeed`
  cache_store.py    one SQLite file of cached values (forecasts, pure-stage memo)
  forecast_cache.py forecasts on disk, keyed by model, symbol, bar time, window content and sampling
  memo.py           memoized `validate_bars` and `technical_gate` (pure functions of a window + config)
  signals.py        stage A: what the three gates say at each bar close (bars closed by then only)
  bar_exits.py      the conservative intra-bar exit rule, carried out by the live exit monitor
  replay.py         stage B: engine, executor, simulated broker and exit monitor on a simulated clock
  runner.py         the hourly loop tying A and B together
  progress.py       progress bar (tqdm) with ETA on a TTY
  metrics.py        pure performance statistics
  rows.py           the rows of decisions.csv and trades.csv
  summary.py, report.py, charts.py   summary.json, trades.csv, decisions.csv, equity.png, prices.png, report.html
  benchmark.py      buy & hold scaled to the strategy's average exposure (the fair comparison)
  price_panels.py   each symbol's prices and its trades' entry/exit markers (pure)
  tables.py, backtest_tables.py   the report tables as rounded text cells (formatting.py rounds)
  pages.py          the Jinja2 templates of templates/ (package data, autoescaped) -> HTML pages
  forecast_scores.py, evaluate.py, evaluate_report.py   forecast quality vs naive baselines (`evaluate`)
  inputs.py         what the two CLI commands share (data, model, cache arguments)
"""
