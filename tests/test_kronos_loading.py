"""Loading is strict: configs, tensors, pinned Hub revisions and sha256 hashes; never random weights."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos_bot.forecast_types import ForecasterUnavailable, SamplingParams
from kronos_bot.kronos.config import KronosConfigError, PredictorConfig, TokenizerConfig, load_config, parse_config
from kronos_bot.kronos.hub import (
    KNOWN_CHECKPOINTS,
    ChecksumMismatchError,
    ModelLoadError,
    paired_tokenizer,
    resolve_checkpoint,
)
from kronos_bot.kronos.model import KronosPredictorModel, KronosTokenizer
from kronos_bot.kronos.predictor import load_forecaster
from kronos_bot.kronos.weights import WeightsError, build_empty, load_weights

TINY = Path(__file__).resolve().parent / "fixtures" / "kronos_tiny"
REV = "0123456789abcdef0123456789abcdef01234567"
SMALL = KNOWN_CHECKPOINTS["NeoQuasar/Kronos-small"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hub_cache(cache: Path, repo_id: str, source: Path, revision: str = REV) -> Path:
    """Lay `source`'s files out as the Hub cache does: blobs by hash, refs, snapshot symlinks."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name in ("config.json", "model.safetensors"):
        blob = repo / "blobs" / sha256(source / name)
        shutil.copyfile(source / name, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def tiny_hashes(part: str) -> tuple[str, str]:
    return sha256(TINY / part / "config.json"), sha256(TINY / part / "model.safetensors")


# -- config.json -------------------------------------------------------------------------------------


def test_configs_parse_and_reject_unknown_missing_or_mistyped_keys() -> None:
    data = json.loads((TINY / "model" / "config.json").read_text())
    assert parse_config(PredictorConfig, data).n_layers == 2
    assert load_config(TokenizerConfig, TINY / "tokenizer" / "config.json").n_decoder_blocks == 2
    with pytest.raises(KronosConfigError, match=r"unknown keys \['n_experts'\]"):
        parse_config(PredictorConfig, {**data, "n_experts": 4})
    without = {k: v for k, v in data.items() if k != "d_model"}
    with pytest.raises(KronosConfigError, match=r"missing keys \['d_model'\]"):
        parse_config(PredictorConfig, without)
    with pytest.raises(KronosConfigError, match="'n_heads' must be int"):
        parse_config(PredictorConfig, {**data, "n_heads": "4"})
    with pytest.raises(KronosConfigError, match="learn_te=false"):
        parse_config(PredictorConfig, {**data, "learn_te": False})
    with pytest.raises(KronosConfigError, match="heads of even size"):
        parse_config(PredictorConfig, {**data, "n_heads": 3})


# -- safetensors ------------------------------------------------------------------------------------


def tiny_model() -> KronosPredictorModel:
    config = load_config(PredictorConfig, TINY / "model" / "config.json")
    return build_empty(lambda: KronosPredictorModel(config))


def tiny_tokenizer() -> KronosTokenizer:
    config = load_config(TokenizerConfig, TINY / "tokenizer" / "config.json")
    return build_empty(lambda: KronosTokenizer(config))


def test_fixture_weights_load_and_training_only_tokenizer_tensors_are_ignored() -> None:
    stored = load_file(str(TINY / "tokenizer" / "model.safetensors"))
    assert {"tokenizer.bsq.basis", "tokenizer.bsq.group_basis", "post_quant_embed_pre.weight"} <= set(stored)
    tokenizer = tiny_tokenizer()
    load_weights(tokenizer, TINY / "tokenizer" / "model.safetensors")
    torch.testing.assert_close(tokenizer.head.weight, stored["head.weight"], rtol=0, atol=0)
    model = tiny_model()
    load_weights(model, TINY / "model" / "model.safetensors")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("transformer.1.ffn.w2.weight"), r"missing tensors: transformer\.1\.ffn\.w2\.weight"),
        (
            lambda sd: sd.__setitem__("transformer.2.norm1.weight", torch.ones(32)),
            r"unexpected tensors: transformer\.2",
        ),
        (
            lambda sd: sd.__setitem__("head.proj_s1.weight", torch.zeros(17, 32)),
            r"tensor head\.proj_s1\.weight has shape \[17, 32\], expected \[16, 32\]",
        ),
        (lambda sd: sd.__setitem__("norm.weight", torch.ones(32, dtype=torch.int64)), r"norm\.weight has dtype"),
    ],
    ids=["missing", "unexpected", "mis-shaped", "integer"],
)
def test_weights_that_do_not_match_exactly_are_refused(tmp_path: Path, edit: object, message: str) -> None:
    state = load_file(str(TINY / "model" / "model.safetensors"))
    edit(state)  # type: ignore[operator]
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=message):
        load_weights(tiny_model(), path)


def test_pickle_files_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with path.open("wb") as fh:
        pickle.dump({"norm.weight": [1.0]}, fh)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(tiny_model(), path)


# -- Hub cache, pins and hashes ----------------------------------------------------------------------


def test_loading_through_the_hub_cache_offline(tmp_path: Path) -> None:
    """The real huggingface_hub code path resolves a pinned revision from a local cache (HF_HUB_OFFLINE=1)."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    hub_cache(tmp_path, "test-org/kronos-tiny", TINY / "model")
    hub_cache(tmp_path, "test-org/kronos-tiny-tokenizer", TINY / "tokenizer")
    predictor = load_forecaster(
        "test-org/kronos-tiny",
        "test-org/kronos-tiny-tokenizer",
        model_revision=REV,
        tokenizer_revision=REV,
        cache_dir=tmp_path,
        model_sha256=tiny_hashes("model"),
        tokenizer_sha256=tiny_hashes("tokenizer"),
        threads=1,
    )
    info = predictor.model_info()
    assert info["model"]["source"] == "test-org/kronos-tiny" and info["model"]["revision"] == REV  # type: ignore[index]
    assert info["model"]["verified"] is True  # type: ignore[index]
    assert info["tokenizer"]["weights_sha256"] == tiny_hashes("tokenizer")[1]  # type: ignore[index]
    assert str(tmp_path) in str(info["model"]["path"])  # type: ignore[index]
    assert info["model_config"]["d_model"] == 32  # type: ignore[index]


def test_pinned_checkpoint_with_other_bytes_is_refused_with_both_hashes(tmp_path: Path) -> None:
    hub_cache(tmp_path, "NeoQuasar/Kronos-small", TINY / "model", revision=SMALL.revision)  # type: ignore[arg-type]
    with pytest.raises(ChecksumMismatchError) as info:
        resolve_checkpoint("NeoQuasar/Kronos-small", cache_dir=tmp_path)
    message = str(info.value)
    for expected, actual in zip((SMALL.config_sha256, SMALL.weights_sha256), tiny_hashes("model"), strict=True):
        assert f"expected sha256 {expected}, actual {actual}" in message
    assert isinstance(info.value, ForecasterUnavailable)


@pytest.mark.parametrize("corrupt", ["config.json", "model.safetensors"])
def test_corrupted_cached_file_is_refused(tmp_path: Path, corrupt: str) -> None:
    snapshot = hub_cache(tmp_path, "test-org/kronos-tiny", TINY / "model")
    blob = (snapshot / corrupt).resolve()
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x01
    blob.write_bytes(bytes(data))
    config_sha, weights_sha = tiny_hashes("model")
    with pytest.raises(ChecksumMismatchError) as info:
        load_forecaster(
            "test-org/kronos-tiny",
            str(TINY / "tokenizer"),
            model_revision=REV,
            cache_dir=tmp_path,
            model_sha256=(config_sha, weights_sha),
        )
    expected = config_sha if corrupt == "config.json" else weights_sha
    assert f"{corrupt} ({snapshot / corrupt}): expected sha256 {expected}, actual {sha256(blob)}" in str(info.value)


def test_not_cached_while_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"not in cache dir .* offline mode is on .*download-model"):
        resolve_checkpoint("NeoQuasar/Kronos-small", cache_dir=tmp_path)


def test_unpinned_or_unhashed_hub_sources_need_an_explicit_choice(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no pinned revision is known for someone/other"):
        resolve_checkpoint("someone/other", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match=r"no known sha256 for NeoQuasar/Kronos-mini@.*verify=False"):
        resolve_checkpoint("NeoQuasar/Kronos-mini", revision=REV, cache_dir=tmp_path)
    # A different revision of a pinned repo does not inherit the pinned hashes.
    with pytest.raises(ModelLoadError, match="no known sha256"):
        resolve_checkpoint("NeoQuasar/Kronos-small", revision=REV, cache_dir=tmp_path)
    # Verification off: resolution proceeds (and here fails only because nothing is cached).
    with pytest.raises(ModelLoadError, match="offline mode is on"):
        resolve_checkpoint("NeoQuasar/Kronos-mini", revision=REV, cache_dir=tmp_path, verify=False)
    assert paired_tokenizer("NeoQuasar/Kronos-mini") == "NeoQuasar/Kronos-Tokenizer-2k"
    assert paired_tokenizer("NeoQuasar/Kronos-small") == "NeoQuasar/Kronos-Tokenizer-base"


def test_local_directories_are_hashed_and_checked_when_hashes_are_given(tmp_path: Path) -> None:
    files = resolve_checkpoint(str(TINY / "model"))
    assert (files.config_sha256, files.weights_sha256) == tiny_hashes("model") and not files.verified
    assert resolve_checkpoint(
        str(TINY / "model"), config_sha256=files.config_sha256, weights_sha256=files.weights_sha256
    ).verified
    with pytest.raises(ChecksumMismatchError, match=r"expected sha256 0{64}"):
        resolve_checkpoint(str(TINY / "model"), weights_sha256="0" * 64)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"missing model\.safetensors"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(ModelLoadError, match="neither an existing directory nor a Hub repo id"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_a_bad_checkpoint_never_becomes_a_model(tmp_path: Path) -> None:
    shutil.copytree(TINY / "model", tmp_path / "model")
    state = load_file(str(tmp_path / "model" / "model.safetensors"))
    del state["dep_layer.norm.weight"]
    save_file(state, str(tmp_path / "model" / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"cannot load predictor .*dep_layer\.norm\.weight"):
        load_forecaster(str(tmp_path / "model"), str(TINY / "tokenizer"))
    # A tokenizer whose bits do not match the model's is refused too.
    shutil.copytree(TINY / "tokenizer", tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    (tmp_path / "tok" / "config.json").write_text(json.dumps({**config, "s2_bits": 5}))
    with pytest.raises(ModelLoadError):
        load_forecaster(str(TINY / "model"), str(tmp_path / "tok"))


def test_a_loaded_model_forecasts(tmp_path: Path) -> None:
    predictor = load_forecaster(str(TINY / "model"), str(TINY / "tokenizer"), threads=1)
    assert predictor.model_info()["model"]["verified"] is False  # type: ignore[index]
    assert predictor.forecast([], SamplingParams()) == []
