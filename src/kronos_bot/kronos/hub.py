"""Locating checkpoint files: pinned Hugging Face Hub revisions or a local directory, sha256-verified.

Why so strict: the bot trades on these numbers. A Hub repo can be force-pushed, a download can be
truncated, a cache can be tampered with; any of those would still "load" and silently change every
forecast. So Hub downloads always name an exact revision, and the two files we read (config.json,
model.safetensors) are hashed and compared with known values before anything is parsed. There is no
fallback to random weights anywhere: failing to get the files is an error (`ModelLoadError`).

A local directory holding config.json + model.safetensors is accepted instead of a repo id; the user
picked those bytes, so their hashes are computed and reported, and checked only when expected hashes
are given explicitly.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kronos_bot.forecast_types import ForecasterUnavailable
from kronos_bot.logs import adopt_library_logger

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

DEFAULT_MODEL = "NeoQuasar/Kronos-small"
DEFAULT_TOKENIZER = "NeoQuasar/Kronos-Tokenizer-base"


@dataclass(frozen=True)
class KnownCheckpoint:
    """A published checkpoint; `None` revision/hashes mean "not pinned by us yet"."""

    repo_id: str
    kind: Literal["predictor", "tokenizer"]
    revision: str | None
    config_sha256: str | None
    weights_sha256: str | None
    weights_bytes: int | None = None
    tokenizer: str | None = None  # the tokenizer a predictor was trained with
    max_context: int | None = None


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    c.repo_id: c
    for c in (
        KnownCheckpoint(
            "NeoQuasar/Kronos-small",
            "predictor",
            "901c26c1332695a2a8f243eb2f37243a37bea320",
            "5e0f6a605d5f81b5c9b559fe5cf716a1acb041c744e6f41bd05b097b7a685396",
            "b082dfcbd8e8c142a725c8bbb99781802f38fec81210e13479effb32b3c3e020",
            98_980_656,
            tokenizer="NeoQuasar/Kronos-Tokenizer-base",
            max_context=512,
        ),
        KnownCheckpoint(
            "NeoQuasar/Kronos-Tokenizer-base",
            "tokenizer",
            "0e0117387f39004a9016484a186a908917e22426",
            "2366e7ccfec76cbc19cf3c4c1b9c5d901be336ca1e83f2d2292c9bff381b77a2",
            "59d85f6af76a2c3b8240ea06cb21db4213b4eeca053f246b23e29cf832fc6bee",
            15_842_368,
        ),
        # Not pinned yet: a revision (commit hash) must be given, and hashes or verify=False.
        KnownCheckpoint(
            "NeoQuasar/Kronos-mini",
            "predictor",
            None,
            None,
            None,
            tokenizer="NeoQuasar/Kronos-Tokenizer-2k",
            max_context=2048,
        ),
        KnownCheckpoint("NeoQuasar/Kronos-Tokenizer-2k", "tokenizer", None, None, None),
        KnownCheckpoint(
            "NeoQuasar/Kronos-base",
            "predictor",
            None,
            None,
            None,
            tokenizer="NeoQuasar/Kronos-Tokenizer-base",
            max_context=512,
        ),
    )
}


class ModelLoadError(ForecasterUnavailable):
    """The checkpoint cannot be obtained or is not the one we expect; never replaced by random weights."""


class ChecksumMismatchError(ModelLoadError):
    """A file's sha256 differs from the expected one; the message shows both."""


@dataclass(frozen=True)
class CheckpointFiles:
    """The resolved files of one checkpoint and their hashes."""

    source: str  # repo id or local directory, as given
    revision: str | None  # commit for Hub sources, None for local directories
    directory: Path
    config_path: Path
    weights_path: Path
    config_sha256: str
    weights_sha256: str
    verified: bool  # whether both hashes were compared with expected values

    def info(self) -> dict[str, object]:
        return {
            "source": self.source,
            "revision": self.revision,
            "path": str(self.directory),
            "config_sha256": self.config_sha256,
            "weights_sha256": self.weights_sha256,
            "verified": self.verified,
        }


def paired_tokenizer(model: str) -> str | None:
    """The tokenizer repo a known predictor repo pairs with (None for unknown sources)."""
    known = KNOWN_CHECKPOINTS.get(model)
    return known.tokenizer if known else None


def is_offline(local_files_only: bool | None = None) -> bool:
    """Explicit flag, else HF_HUB_OFFLINE: set in the environment now, or when huggingface_hub was
    imported (it reads the variable once, and then refuses network access whatever we pass)."""
    if local_files_only is not None:
        return local_files_only
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What to do when the weights are neither cached nor downloadable here (said with every such error).
MODEL_FIX = (
    "fix: run `kronos-bot download-model` on a machine with internet and copy its Hugging Face cache "
    "(~/.cache/huggingface/hub) here, or point forecaster.model and forecaster.tokenizer at local folders"
)


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or not _REPO_ID.match(source)


def resolve_checkpoint(
    source: str,
    *,
    revision: str | None = None,
    config_sha256: str | None = None,
    weights_sha256: str | None = None,
    verify: bool = True,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    progress: bool | None = None,
) -> CheckpointFiles:
    """Find (downloading if needed) config.json + model.safetensors for `source` and check their hashes.

    `source` is a Hub repo id or a local directory. For Hub repos the revision defaults to the pinned
    one in KNOWN_CHECKPOINTS and the expected hashes to the pinned ones when that revision is used.
    `verify=True` with no expected hash for a Hub source is refused (say which hash or disable it).
    Offline when `local_files_only` or HF_HUB_OFFLINE is set. `progress=None` shows download bars
    only when stderr is a TTY.
    """
    local = Path(source).expanduser()
    if local.is_dir():
        return _resolve_local(source, local, config_sha256, weights_sha256, verify)
    if _looks_like_path(source):
        raise ModelLoadError(f"{source!r} is neither an existing directory nor a Hub repo id (org/name)")
    return _resolve_hub(
        source, revision, config_sha256, weights_sha256, verify, cache_dir, is_offline(local_files_only), progress
    )


def _resolve_local(
    source: str, directory: Path, config_sha: str | None, weights_sha: str | None, verify: bool
) -> CheckpointFiles:
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelLoadError(
                f"{directory}: missing {path.name} (a checkpoint directory needs {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
    files = _hashed(source, None, directory, config_path, weights_path)
    if verify and (config_sha or weights_sha):
        _check_hashes(files, config_sha, weights_sha)
        return replace(files, verified=bool(config_sha and weights_sha))
    return files


def _resolve_hub(
    repo_id: str,
    revision: str | None,
    config_sha: str | None,
    weights_sha: str | None,
    verify: bool,
    cache_dir: str | Path | None,
    offline: bool,
    progress: bool | None,
) -> CheckpointFiles:
    known = KNOWN_CHECKPOINTS.get(repo_id)
    if revision is None:
        if known is None or known.revision is None:
            raise ModelLoadError(
                f"no pinned revision is known for {repo_id}; pass the commit hash to use "
                "(revision=... / forecaster.model_revision or tokenizer_revision)"
            )
        revision = known.revision
    if known is not None and revision == known.revision:
        config_sha = config_sha or known.config_sha256
        weights_sha = weights_sha or known.weights_sha256
    if verify and not (config_sha and weights_sha):
        raise ModelLoadError(
            f"no known sha256 for {repo_id}@{revision} "
            f"(config.json: {config_sha or 'unknown'}, model.safetensors: {weights_sha or 'unknown'}); "
            "give both expected hashes, or disable verification explicitly "
            "(verify=False / forecaster.verify_sha256 = false)"
        )
    config_path = _download(repo_id, CONFIG_FILE, revision, cache_dir, offline, progress)
    weights_path = _download(repo_id, WEIGHTS_FILE, revision, cache_dir, offline, progress)
    files = _hashed(repo_id, revision, config_path.parent, config_path, weights_path)
    if verify:
        _check_hashes(files, config_sha, weights_sha)
        return replace(files, verified=True)
    return files


def _hashed(
    source: str, revision: str | None, directory: Path, config_path: Path, weights_path: Path
) -> CheckpointFiles:
    return CheckpointFiles(
        source=source,
        revision=revision,
        directory=directory,
        config_path=config_path,
        weights_path=weights_path,
        config_sha256=sha256_file(config_path),
        weights_sha256=sha256_file(weights_path),
        verified=False,
    )


def _check_hashes(files: CheckpointFiles, config_sha: str | None, weights_sha: str | None) -> None:
    problems = []
    for name, path, expected, actual in (
        (CONFIG_FILE, files.config_path, config_sha, files.config_sha256),
        (WEIGHTS_FILE, files.weights_path, weights_sha, files.weights_sha256),
    ):
        if expected and expected.lower() != actual:
            problems.append(f"{name} ({path}): expected sha256 {expected.lower()}, actual {actual}")
    if problems:
        where = files.source + (f"@{files.revision}" if files.revision else "")
        raise ChecksumMismatchError(
            f"refusing to load {where}: sha256 mismatch: "
            + "; ".join(problems)
            + ". Delete the corrupted file from the cache and download again, or check the pinned hashes."
        )


def _download(
    repo_id: str, filename: str, revision: str, cache_dir: str | Path | None, offline: bool, progress: bool | None
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    adopt_library_logger("huggingface_hub")  # its warnings once, through our log format
    show = sys.stderr.isatty() if progress is None else progress
    kwargs: dict[str, Any] = {}
    if not show:
        kwargs["tqdm_class"] = _quiet_tqdm_class()
    where = f"{filename} of {repo_id}@{revision}"
    cache_note = f"cache dir {cache_dir}" if cache_dir else "the default Hub cache"
    cache = str(cache_dir) if cache_dir is not None else None
    if not offline and _COMMIT.fullmatch(revision):
        # A pinned commit never changes: a cached copy is the file, and needs no network at all.
        try:
            return Path(
                str(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, local_files_only=True))
            )
        except (LocalEntryNotFoundError, OSError, ValueError):
            pass
        unreachable = _hub_unreachable()
        if unreachable is not None:
            raise ModelLoadError(f"{where} is not in {cache_note} and {unreachable}; {MODEL_FIX}")
    try:
        path = hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache, local_files_only=offline, **kwargs
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise ModelLoadError(
                f"{where} is not in {cache_note} and offline mode is on (HF_HUB_OFFLINE / local_files_only); "
                f"{MODEL_FIX}"
            ) from exc
        raise ModelLoadError(f"{where} is neither in {cache_note} nor reachable on the Hub; {MODEL_FIX}") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise ModelLoadError(f"{where} does not exist on the Hub: {exc}") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot download {where}: {exc}; {MODEL_FIX}") from exc
    return Path(str(path))


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached, in words, when a DNS lookup already says so (None: go and try).

    huggingface_hub retries a failed lookup five times with backoff (about 24 s) before giving up; a
    machine without DNS for the Hub fails the same way every time, so one lookup decides at once.
    """
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    host = urlsplit(constants.ENDPOINT).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"the Hub cannot be reached: DNS lookup of {host} failed ({exc.strerror or exc}; no internet?)"
    except OSError:
        return None
    return None


def _quiet_tqdm_class() -> type:
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _QuietTqdm(hf_tqdm):
        """Progress bars off when nobody watches (logs, services)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _QuietTqdm
