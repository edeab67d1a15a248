"""How good the forecasts and the gates are: one scoring module for the live trader, backtests and
`evaluate` (`scores`, `summary`), the skill guard (`guard`) and the shadow outcomes of decisions
(`shadow`). Pure functions of numbers and bars; the journal I/O lives with its users."""
