"""Process two, the trader: scheduler, entry cycle, engine, orders, exits, backstops, journal.

Never imports torch: it reaches the model only through the forecaster service's HTTP client (or, in
`inprocess` mode, a factory that imports the model lazily), so a restart after a YAML edit takes a second.
Start at `daemon` (the parts and the schedule) and `cycle` (one entry cycle); `docs/ARCHITECTURE.md`
maps every concern to its module. This package file imports nothing, so that the pure pieces
(`engine`, `stops`) can be used -- by backtests, for instance -- without the daemon's dependencies.
"""
