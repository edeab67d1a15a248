"""`kronos-bot optimize` workers on one PostgreSQL study: Optuna's distributed mode, for real.

A throwaway PostgreSQL server is started for the module (initdb in a temporary folder, a Unix socket
only, trust authentication, stopped at the end); skipped when this machine has no PostgreSQL programs
or no psycopg driver. As root, the server runs as the `postgres` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.test_optimize import SPACE, command, run

pytest.importorskip("psycopg", reason="no psycopg driver installed")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) on this machine")
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None or subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
            pytest.skip("running as root without a postgres user to run the server as")
        prefix = [runuser, "-u", "postgres", "--"]
    # Not under pytest's temporary folders: those are private to this user, and the server may be another.
    root = Path(tempfile.mkdtemp(prefix="kronos-bot-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if prefix:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses='' -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sockets}&port={port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One forecast cache for the module: the first run computes the forecasts, the others read them."""
    return tmp_path_factory.mktemp("pg-cache")


def test_two_worker_processes_share_one_postgresql_study(postgres_url: str, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = command(out, cache, "--trials", "7", "--jobs", "2", "--storage", postgres_url, "--study", "pg-pair")
    code, printed = run([*args, "--space", str(SPACE)])
    assert code == 0 and "7 trials in" in printed
    trials = optuna.load_study(study_name="pg-pair", storage=postgres_url).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == 7 and sorted(numbers) == list(range(7))  # adds up, no number twice
    assert (out / "best.yaml").is_file() and not (out / "study.db").exists()  # the study lives in PostgreSQL


def test_a_second_machine_joins_the_postgresql_study_and_it_stops_at_the_total(
    postgres_url: str, cache: Path, tmp_path: Path
) -> None:
    """Two invocations as two machines would run them (same --study and --storage, each its own --out):
    the second one runs only what the first left of --trials."""
    first = command(tmp_path / "a", cache, "--trials", "4", "--storage", postgres_url, "--study", "join")
    assert run([*first, "--space", str(SPACE)])[0] == 0
    second = command(tmp_path / "b", cache, "--trials", "6", "--storage", postgres_url, "--study", "join")
    code, printed = run([*second, "--space", str(SPACE)])
    assert code == 0 and "2 trials in" in printed
    numbers = sorted(t.number for t in optuna.load_study(study_name="join", storage=postgres_url).trials)
    assert numbers == list(range(6))
