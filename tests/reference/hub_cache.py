#!/usr/bin/env python3
"""Oracle for models named by their Hub id (src/hub_cache.cpp): how huggingface_hub finds them offline.

Writes reference/hub_cache/:
  cache/       a Hugging Face cache in huggingface_hub's layout (models--NS--NAME/{blobs,refs,snapshots}, each
               snapshot file a relative symlink to its blob), holding:
                 autotrain-fixtures/tiny-qwen3  the qwen3 fixture at refs/main, plus an older snapshot
                 autotrain-fixtures/no-main     a snapshot but no refs/main (as `hf download --revision SHA` leaves)
                 autotrain-fixtures/dangling    refs/main naming a commit that has no snapshot folder
  expected.json
    "snapshots": {repo id: the folder of try_to_load_from_cache(id, "config.json", cache_dir=cache), relative to
                 cache (the fixtures may be read from another working folder), or null};
                 transformers' AutoConfig.from_pretrained(id, cache_dir=cache, local_files_only=True) loads the
                 same folder's config (asserted here)
    "cache_dirs": [[environment, constants.HF_HUB_CACHE under it (a fresh interpreter)], ...]
    "repo_ids":   {name: whether validate_repo_id accepts it}"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

COMMIT = "5e8a1b4c9f0d2e3a7b6c5d4e3f2a1b0c9d8e7f60"
OLD_COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAMES = ["Qwen/Qwen3-8B", "gpt2", "meta-llama/Llama-3.1-8B-Instruct", "org_1/model.v2", "a--b", "a/b/c", "-x/y",
         "x/y.", "x/y.git", "./model", "../model", "/abs/path", "name with space", "caf\u00e9/x", "x" * 96, "x" * 97,
         "n/" + "y" * 96, "a..b", "_a/_b", "a", ".hidden", "models/", ""]
ENVIRONMENTS = [
    {"HF_HUB_CACHE": "/hf/hub-cache", "HUGGINGFACE_HUB_CACHE": "/hf/legacy", "HF_HOME": "/hf/home"},
    {"HUGGINGFACE_HUB_CACHE": "/hf/legacy", "HF_HOME": "/hf/home", "XDG_CACHE_HOME": "/xdg"},
    {"HF_HOME": "/hf/home", "XDG_CACHE_HOME": "/xdg"},
    {"HF_HOME": "~/hf-home"},
    {"XDG_CACHE_HOME": "/xdg"},
    {},
]
HOME = "/home/someone"


def put_snapshot(repo: Path, commit: str, source: Path):
    """Each file as huggingface_hub stores it: content-addressed in blobs/, linked from snapshots/COMMIT/."""
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for item in sorted(source.iterdir()):
        data = item.read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snapshot / item.name).symlink_to(os.path.join("..", "..", "blobs", blob))


def write_cache(cache: Path, fixtures: Path):
    qwen3 = cache / "models--autotrain-fixtures--tiny-qwen3"
    put_snapshot(qwen3, COMMIT, fixtures / "models" / "qwen3")
    put_snapshot(qwen3, OLD_COMMIT, fixtures / "models" / "qwen2")  # an older revision: a different model
    (qwen3 / "refs").mkdir()
    (qwen3 / "refs" / "main").write_text(COMMIT)  # no newline, as huggingface_hub writes it
    put_snapshot(cache / "models--autotrain-fixtures--no-main", COMMIT, fixtures / "models" / "qwen3")
    dangling = cache / "models--autotrain-fixtures--dangling"
    put_snapshot(dangling, OLD_COMMIT, fixtures / "models" / "qwen3")
    (dangling / "refs").mkdir()
    (dangling / "refs" / "main").write_text(COMMIT)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    fixtures = Path(parser.parse_args().fixtures)
    out = fixtures / "reference" / "hub_cache"
    shutil.rmtree(out, ignore_errors=True)
    cache = out / "cache"
    write_cache(cache, fixtures)

    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers import AutoConfig
    snapshots = {}
    for repo_id in ["autotrain-fixtures/tiny-qwen3", "autotrain-fixtures/no-main", "autotrain-fixtures/dangling",
                    "autotrain-fixtures/absent"]:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache))
        snapshots[repo_id] = os.path.relpath(os.path.dirname(found), cache) if isinstance(found, str) else None
        try:
            config = AutoConfig.from_pretrained(repo_id, cache_dir=str(cache), local_files_only=True)
            assert snapshots[repo_id] is not None and config.model_type == "qwen3", repo_id
        except OSError:
            assert snapshots[repo_id] is None, repo_id

    cache_dirs = []
    for environment in ENVIRONMENTS:
        env = {key: value for key, value in os.environ.items()
               if key not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")}
        env.update(environment, HOME=HOME)
        printed = subprocess.run([sys.executable, "-c", "from huggingface_hub import constants; "
                                  "print(constants.HF_HUB_CACHE)"], env=env, check=True, capture_output=True,
                                 text=True).stdout.strip()
        cache_dirs.append([{**environment, "HOME": HOME}, printed])

    repo_ids = {}
    for name in NAMES:
        try:
            validate_repo_id(name)
            repo_ids[name] = True
        except HFValidationError:
            repo_ids[name] = False

    (out / "expected.json").write_text(json.dumps({"snapshots": snapshots, "cache_dirs": cache_dirs,
                                                   "repo_ids": repo_ids}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
