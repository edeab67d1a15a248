"""`--jobs J`: J worker processes on this machine, each joining the study through its storage.

Why processes (spawned, not forked) and not threads: a trial is pure-Python replay, so threads would share
one core; spawn gives each worker a fresh interpreter that never imports torch (it rebuilds the trial
data from the warm forecast cache with no model at all). Why each worker rebuilds instead of receiving
the main process's data: the same code path serves a worker started on another machine, which has only
the storage URL and the (shared) cache folder.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable
from dataclasses import dataclass

from kronos_bot.backtest.optimize.study import StudyPlan, counted_trials, create_study, optimize
from kronos_bot.backtest.period import Period

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerTask:
    """One worker's share: the plan, where its inputs come from, and how many trials to run."""

    plan: StudyPlan
    args: argparse.Namespace  # --data, --symbols, --cache-dir... as parsed (plain values: picklable)
    period: Period
    trials: int
    total: int
    timeout: float | None
    worker: int


def shares(trials: int, jobs: int) -> list[int]:
    """`trials` split over `jobs` workers as evenly as possible (the first ones take the remainder)."""
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]


def run_worker(task: WorkerTask) -> int:
    """A worker process's body: trial data from the warm cache (no model), then its share of trials."""
    from kronos_bot.backtest import inputs
    from kronos_bot.backtest.cache_store import CacheStore
    from kronos_bot.backtest.trials import prepare_trials
    from kronos_bot.logs import configure_logging

    settings = task.plan.settings
    # A spawned process starts with no logging set up: the same quiet level as the main process, else every
    # replayed order of every trial would be logged.
    configure_logging(
        level=task.args.log_level or "WARNING",
        fmt=task.args.log_format or settings.logging.format,
        stream=sys.stderr,
    )
    store = inputs.load_store(task.args, settings, list(settings.symbols))
    with CacheStore.in_dir(task.args.cache_dir) as cache:
        data = prepare_trials(
            settings, store, task.period, forecaster=None, cache=cache, batch_hours=task.args.batch_hours
        )
    return optimize(task.plan, data, trials=task.trials, total=task.total, timeout=task.timeout, worker=task.worker)


def run_workers(tasks: list[WorkerTask], on_progress: Callable[[int], None] | None = None) -> int:
    """Run each task in its own spawned process; returns the trials they ran. A worker's exception is
    re-raised here (the others are cancelled or finish their current trial)."""
    context = multiprocessing.get_context("spawn")
    study = create_study(tasks[0].plan) if on_progress is not None else None
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(tasks), mp_context=context) as pool:
        futures = [pool.submit(run_worker, task) for task in tasks]
        try:
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=POLL_SECONDS)
                for future in done:
                    future.result()  # raises a worker's failure at once
                if study is not None and on_progress is not None:
                    on_progress(counted_trials(study))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return sum(f.result() for f in futures)
