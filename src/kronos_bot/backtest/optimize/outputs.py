"""best.yaml and trials.csv: the study's result as files a user (and `config check`) can read.

Why best.yaml holds only the changed keys: it is an overlay, merged onto the user's own config with a
second `--config`; repeating unchanged keys would pin values the user may edit later, and hide which
thresholds the study actually moved.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml

from kronos_bot.backtest.optimize.space import SearchSpace
from kronos_bot.backtest.optimize.study import clean

TRIAL_COLUMNS = ("number", "state", "value", "in_sample_objective", "in_sample_return", "trades", "seconds")


def best_yaml_text(changed: Mapping[str, Any], header: list[str]) -> str:
    """The overlay as nested YAML under `# ...` header lines; `{}` when nothing changed (an empty file would
    be refused by the config loader, which treats it as an accident)."""
    body = yaml.safe_dump(dict(changed), sort_keys=True, default_flow_style=False) if changed else "{}\n"
    return "".join(f"# {line}\n" for line in header) + body


def write_best_yaml(path: Path, changed: Mapping[str, Any], header: list[str]) -> None:
    path.write_text(best_yaml_text(changed, header), encoding="utf-8")


def trial_rows(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial of the study (every worker's), by trial number."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        seconds = t.duration.total_seconds() if t.duration is not None else None
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "in_sample_objective": t.user_attrs.get("in_sample"),
            "in_sample_return": t.user_attrs.get("in_sample_return"),
            "trades": t.user_attrs.get("trades"),
            "seconds": None if seconds is None else round(seconds, 3),
        }
        params = clean(t.params)
        row.update({path: params.get(path) for path in space.paths})
        row["invalid"] = t.user_attrs.get("invalid", "")
        rows.append(row)
    return rows


def write_trials_csv(path: Path, rows: list[dict[str, Any]], space: SearchSpace) -> None:
    columns = [*TRIAL_COLUMNS, *space.paths, "invalid"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
