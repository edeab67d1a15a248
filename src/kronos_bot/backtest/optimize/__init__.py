"""`kronos-bot optimize`: an Optuna search over config thresholds, validated walk-forward.

One module per job: `space` (the search space file -> Optuna distributions), `overlay` (a sampled
combination as a config overlay, validated by the daemon's own Settings model), `folds` (the walk-forward
split), `study` (storage, sampler, objective), `workers` (--jobs processes), `walkforward` (the best
trial and the defaults on every fold), `outputs` (best.yaml, trials.csv), `report` (report.html, the fold
table) and `results` (all outputs written at once). Trials replay cached forecasts through
`kronos_bot.backtest.trials`; nothing here imports torch.
"""
