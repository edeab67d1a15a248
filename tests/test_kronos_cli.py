"""`kronos-bot forecast` and `kronos-bot download-model`, run in process on the tiny fixture."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kronos_bot.cli import main as cli_main
from kronos_bot.kronos.hub import KNOWN_CHECKPOINTS

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "kronos_tiny"
REV = "0123456789abcdef0123456789abcdef01234567"
MODEL_ARGS = ["--model", str(TINY / "model"), "--tokenizer", str(TINY / "tokenizer"), "--no-verify", "--threads", "1"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The shipped config with the Hub cache pointed into tmp."""
    data = yaml.safe_load((REPO / "config" / "bot.yaml").read_text())
    data["forecaster"].update(hf_cache_dir=str(tmp_path / "hub"), threads=1)
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(config: Path, *args: str) -> int:
    return cli_main(["--config", str(config), *args])


def test_forecast_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        config,
        "forecast",
        "--csv",
        str(TINY / "bars.csv"),
        "--context",
        "60",
        "--pred-len",
        "4",
        "--top-k",
        "1",
        "--json",
        *MODEL_ARGS,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert [set(c) for c in result["candles"]] == [
        {"timestamp", "open", "high", "low", "close", "volume", "amount"}
    ] * 4
    # bars.csv ends at 2024-07-03 14:00 (row 70); with --context 60 the context is its last 60 rows.
    times = [datetime.fromisoformat(c["timestamp"]) for c in result["candles"]]
    assert times[0] == datetime.fromisoformat("2024-07-03T15:00:00+00:00")
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(times))
    assert result["p_up"] in (0.0, 1.0)  # one greedy path
    assert set(result["close_quantiles"]) == {"p10", "p50", "p90"}
    assert result["settings"]["context"] == 60 and result["settings"]["top_k"] == 1
    assert result["settings"]["max_context"] == 512 and result["settings"]["samples"] == 1
    assert result["settings"]["model"]["source"] == str(TINY / "model")


def test_forecast_table_is_reproducible_with_a_seed(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["forecast", "--csv", str(TINY / "bars.csv"), "--samples", "8", "--seed", "5", *MODEL_ARGS]
    assert run(config, *args) == 0
    first = capsys.readouterr().out
    assert run(config, *args) == 0
    second = capsys.readouterr().out
    assert "close p10" in first and "P(up) =" in first and "seed=5" in first

    def without_timing(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("model ")]  # compute time differs

    assert without_timing(second) == without_timing(first)


def write_csv(path: Path, rows: list[dict[str, Any]], header: str = "timestamp,open,high,low,close,volume") -> Path:
    lines = [header] + [",".join(str(r[k]) for k in header.split(",")) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def bar_rows(n: int = 30) -> list[dict[str, Any]]:
    start = datetime(2024, 1, 1)
    return [
        {
            "timestamp": (start + timedelta(minutes=5 * i)).isoformat(),
            "open": 10 + i * 0.01,
            "high": 10.2 + i * 0.01,
            "low": 9.9 + i * 0.01,
            "close": 10.1 + i * 0.01,
            "volume": 100 + i,
        }
        for i in range(n)
    ]


def test_forecast_csv_without_amount_and_naive_times(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = write_csv(tmp_path / "x.csv", bar_rows())
    assert run(config, "forecast", "--csv", str(csv_path), "--pred-len", "2", "--json", *MODEL_ARGS) == 0
    candles = json.loads(capsys.readouterr().out)["candles"]
    assert [c["timestamp"] for c in candles] == ["2024-01-01T02:30:00+00:00", "2024-01-01T02:35:00+00:00"]


def test_forecast_bad_input_exits_2(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = write_csv(tmp_path / "m.csv", bar_rows(), header="timestamp,open,high,low,close")
    assert run(config, "forecast", "--csv", str(missing), *MODEL_ARGS) == 2
    assert "missing column(s) volume" in capsys.readouterr().err
    rows = bar_rows()
    rows[-3]["high"] = 1.0
    inverted = write_csv(tmp_path / "inverted.csv", rows)
    assert run(config, "forecast", "--csv", str(inverted), *MODEL_ARGS) == 2
    assert "series 'inverted': high 1.0 < low" in capsys.readouterr().err
    assert run(config, "forecast", "--csv", str(inverted), "--top-p", "0", *MODEL_ARGS) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err


def test_forecast_without_loadable_weights_exits_3(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The pinned Kronos-small is not in the (empty, tmp) cache and HF_HUB_OFFLINE=1: a clear refusal.
    assert run(config, "forecast", "--csv", str(TINY / "bars.csv"), "--threads", "1") == 3
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "offline mode is on" in err


def hub_cache(cache: Path, repo_id: str, source: Path, revision: str) -> None:
    snapshot = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, snapshot / name)


def test_download_model_reports_paths_and_hashes(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_cache(tmp_path / "hub", "test-org/tiny", TINY / "model", REV)
    hub_cache(tmp_path / "hub", "test-org/tiny-tok", TINY / "tokenizer", REV)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    code = run(
        config,
        "download-model",
        "--model",
        "test-org/tiny",
        "--model-revision",
        REV,
        "--tokenizer",
        "test-org/tiny-tok",
        "--tokenizer-revision",
        REV,
        "--no-verify",
        "--json",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    info = json.loads(out)
    weights = (TINY / "model" / "model.safetensors").read_bytes()
    assert info["model"]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert info["model"]["revision"] == REV and info["model"]["verified"] is False
    assert info["tokenizer"]["config_path"].endswith(f"snapshots/{REV}/config.json")


def test_download_model_refuses_wrong_bytes_for_the_pinned_model(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = KNOWN_CHECKPOINTS["NeoQuasar/Kronos-small"]
    hub_cache(tmp_path / "hub", small.repo_id, TINY / "model", small.revision or "")
    assert run(config, "download-model") == 3
    err = capsys.readouterr().err
    assert f"expected sha256 {small.weights_sha256}, actual" in err
