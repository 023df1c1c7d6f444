"""Hugging Face Hub: push a checkpoint folder, and load one back with ``load_model("hf://user/name")``."""

from __future__ import annotations

import re
from pathlib import Path

from .checkpoints import CONFIG, WEIGHTS, find, load_folder

PREFIX = "hf://"
PUSHED_FILES = (WEIGHTS, CONFIG, "README.md")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def parse_repo(ref: str) -> tuple[str, str | None]:
    """'hf://user/name' or 'hf://user/name@rev' → (repo_id, revision)."""
    body = ref[len(PREFIX) :] if ref.startswith(PREFIX) else ref
    repo, _, rev = body.partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise ValueError(f"{ref!r} is not a Hub model id; write it as hf://user/name.")
    return repo, rev or None


def push(name: str, repo: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a checkpoint's safetensors, config and model card; returns the repo URL."""
    from huggingface_hub import HfApi

    repo_id, _ = parse_repo(repo)
    folder = find(name)
    load_folder(folder)  # never publish a broken checkpoint
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=list(PUSHED_FILES),
        commit_message=f"Upload vaedemo checkpoint {name}",
    )
    return str(url)


def download(ref: str) -> Path:
    """The local folder of a Hub checkpoint (the cache, or offline with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, revision = parse_repo(ref)
    try:
        path = snapshot_download(repo_id, revision=revision, repo_type="model", allow_patterns=list(PUSHED_FILES))
    except LocalEntryNotFoundError:
        raise ValueError(f"{repo_id} is not in the local Hub cache and the Hub cannot be reached.") from None
    except (HfHubHTTPError, OSError) as e:
        raise ValueError(f"Could not fetch {repo_id} from the Hub ({type(e).__name__}).") from None
    return Path(path)
