"""`kronos-bot download-model`: fetch the configured predictor + tokenizer into the Hub cache, verified.

Run it once with network access (e.g. at install time) so that the forecaster can start offline
(HF_HUB_OFFLINE=1). Prints where each checkpoint lives and its sha256 hashes; refuses (exit 3, said by
kronos_bot.commands.failures) when a file cannot be fetched or its hash differs from the pinned one.

    kronos-bot download-model
    kronos-bot download-model --model NeoQuasar/Kronos-mini --model-revision <commit> --no-verify --json
"""

from __future__ import annotations

import argparse
import json

from kronos_bot.config import Settings

NAME = "download-model"
HELP = "download the pinned Kronos model + tokenizer into the Hugging Face cache and print their hashes"
LOGS_TO_STDERR = True
EXAMPLE = "example: kronos-bot download-model --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="MODEL", help="predictor Hub repo id (default: forecaster.model)")
    parser.add_argument("--model-revision", metavar="REV", help="commit to fetch (default: the pinned one)")
    parser.add_argument(
        "--tokenizer", metavar="TOKENIZER", help="tokenizer Hub repo id (default: the model's pair / config)"
    )
    parser.add_argument("--tokenizer-revision", metavar="REV", help="commit to fetch (default: the pinned one)")
    parser.add_argument("--cache-dir", metavar="DIR", help="Hub cache directory (default: forecaster.hf_cache_dir)")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check (for unpinned checkpoints)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from kronos_bot.kronos.hub import paired_tokenizer, resolve_checkpoint

    fs = settings.forecaster
    model = args.model or fs.model
    # The configured revisions pin the configured repos only; another repo uses its own pin (or --*-revision).
    model_revision = args.model_revision or (fs.model_revision if model == fs.model else None)
    tokenizer = args.tokenizer or (paired_tokenizer(model) if model != fs.model else None) or fs.tokenizer
    tokenizer_revision = args.tokenizer_revision or (fs.tokenizer_revision if tokenizer == fs.tokenizer else None)
    verify = fs.verify_sha256 and not args.no_verify
    cache_dir = args.cache_dir or fs.hf_cache_dir
    results = {}
    for role, source, revision in (("model", model, model_revision), ("tokenizer", tokenizer, tokenizer_revision)):
        # A ModelLoadError (unreachable, not found, hash mismatch) ends in cli.main: one line, exit 3.
        files = resolve_checkpoint(source, revision=revision, verify=verify, cache_dir=cache_dir)
        results[role] = {
            **files.info(),
            "config_path": str(files.config_path),
            "weights_path": str(files.weights_path),
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for role, info in results.items():
        where = f"{info['source']}@{info['revision']}" if info["revision"] else str(info["source"])
        print(f"{role}: {where}")
        print(f"  directory      {info['path']}")
        print(f"  config.json    sha256 {info['config_sha256']}")
        print(f"  model.safetensors sha256 {info['weights_sha256']}")
        print(f"  verified       {'yes' if info['verified'] else 'NO (no expected hash / verification off)'}")
    return 0
