"""The one checkpoint format: a folder per model with model.safetensors and config.json.

Writes are atomic (a temporary folder, fsync, os.replace), loading never unpickles, and
names are slugs that cannot leave the checkpoints folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .models import REGISTRY, LatentModel, config_to_dict, model_from_config

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MAX_NAME = 64
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024  # refuse to read anything bigger into memory
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]|\.(?!\.)){0,62}[a-z0-9]$|^[a-z0-9]$")
_STALE_TMP_SECONDS = 3600
AUXILIARY_KINDS = ("classifier",)  # folders saved in this format that are not latent models
_SWAP_LOCK = threading.Lock()  # a save's two renames and a scan's recovery never interleave


def checkpoint_dir() -> Path:
    """``$VAEDEMO_CHECKPOINT_DIR``, else ``checkpoints/`` at the repository root."""
    env = os.environ.get("VAEDEMO_CHECKPOINT_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints"


def validate_name(name: Any) -> str:
    """Return ``name`` if it is a safe checkpoint name, else raise ValueError with a clear sentence."""
    if not isinstance(name, str) or not name:
        raise ValueError("Give the checkpoint a name.")
    if "\x00" in name:
        raise ValueError("A checkpoint name cannot contain a NUL byte.")
    if len(name) > MAX_NAME:
        raise ValueError(f"A checkpoint name can be at most {MAX_NAME} characters long.")
    if not _SLUG.match(name):
        raise ValueError(
            f"{name!r} is not a valid checkpoint name: use lower-case letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (for example 'my-vae')."
        )
    return name


def slugify(text: str) -> str:
    """Turn free text into a valid name ('My VAE #2' → 'my-vae-2'), or '' when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:MAX_NAME].strip("-")
    return slug


def resolve(name: str, root: Path | None = None) -> Path:
    """The folder of checkpoint ``name``, refusing anything that resolves outside ``root``."""
    validate_name(name)
    root = (root or checkpoint_dir()).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ValueError(f"The checkpoint name {name!r} points outside the checkpoints folder.")
    return path


def find(name: str, root: Path | None = None) -> Path:
    """The folder of an existing checkpoint ``name``, or a ValueError that lists the available ones."""
    folder = resolve(name, root)
    if not folder.is_dir():
        names = [p.name for p in sorted(folder.parent.glob("*")) if p.is_dir() and not p.name.startswith(".")]
        hint = f" Available: {', '.join(names[:20])}." if names else " Train one first."
        raise ValueError(f"There is no checkpoint named {name!r}.{hint}")
    return folder


# ---------------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write one file so that readers see the old or the new content, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _write_synced(Path(tmp), data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _json_safe(value: Any) -> Any:
    """NaN/inf become None so config.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def state_dict_bytes(model: LatentModel) -> bytes:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return st_save(state)


def save_checkpoint(
    model: LatentModel,
    name: str,
    *,
    meta: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
    overwrite: bool = False,
    root: Path | None = None,
) -> Path:
    """Save ``model`` as ``<root>/<name>/`` atomically and return the folder.

    ``meta`` goes into config.json beside the model's own config (training settings, data,
    metrics, history, the command). ``extra_files`` (file name → bytes) are written in the same
    atomic step, e.g. the optimizer state for resuming, or a model card.
    """
    resolve(name, root)  # refuse a bad name before any work
    config = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "model": {
            "kind": model.kind,
            "config": config_to_dict(model.config),
            "num_parameters": model.num_parameters(),
        },
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **(meta or {}),
    }
    files = {WEIGHTS: state_dict_bytes(model), CONFIG: json.dumps(_json_safe(config), indent=2).encode()}
    for fname, data in (extra_files or {}).items():
        if fname in files:
            raise ValueError(f"Refusing to write the extra file {fname!r}.")
        files[fname] = data
    return save_files(name, files, overwrite=overwrite, root=root)


def save_files(name: str, files: dict[str, bytes], *, overwrite: bool = False, root: Path | None = None) -> Path:
    """Write ``files`` (name → bytes) as the folder ``<root>/<name>/`` in one atomic step."""
    root = Path(root or checkpoint_dir())
    root.mkdir(parents=True, exist_ok=True)
    final = resolve(name, root)
    if final.exists() and not overwrite:
        raise ValueError(f"A checkpoint named {name!r} already exists; choose another name.")
    for fname in files:
        if "/" in fname or "\\" in fname or fname.startswith(".") or not fname:
            raise ValueError(f"Refusing to write the file {fname!r}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        for fname, data in files.items():
            _write_synced(tmp / fname, data)
        _fsync_dir(tmp)
        with _SWAP_LOCK:
            _swap_in(tmp, final, root, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    return final


def _swap_in(tmp: Path, final: Path, root: Path, name: str) -> None:
    if final.exists():
        # Move the old folder aside first; an interrupted swap is undone by _recover().
        trash = root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _recover(root: Path) -> None:
    """Restore a folder moved aside by an interrupted overwrite; drop stale temporary folders."""
    if not root.is_dir():
        return
    now = time.time()
    with _SWAP_LOCK:
        entries = list(root.iterdir())
    for entry in entries:
        if entry.name.startswith(".trash-"):
            name = entry.name[len(".trash-") : -9]
            target = root / name
            try:
                if not target.exists():
                    os.replace(entry, target)
                else:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                pass
        elif entry.name.startswith(".tmp-") and entry.is_dir():
            try:
                if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                pass


# ---------------------------------------------------------------------------------- reading


def read_config(folder: Path, kinds: tuple[str, ...] | None = None) -> dict:
    path = Path(folder) / CONFIG
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError("its config.json is missing") from None
    if len(raw) > 16 * 1024 * 1024:
        raise ValueError("its config.json is too large")
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"its config.json is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError("its config.json has no model section")
    kind = config["model"].get("kind")
    if kind not in (kinds or REGISTRY):
        raise ValueError(f"its model kind {kind!r} is unknown")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"it was written by a newer vaedemo (format {config.get('format_version')})")
    return config


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never a pickle), with readable errors."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"its {path.name} is missing") from None
    if size == 0:
        raise ValueError(f"its {path.name} is empty")
    if size > MAX_WEIGHTS_BYTES:
        raise ValueError(f"its {path.name} is too large")
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"its {path.name} is not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None


def _build_and_fill(config: dict, tensors: dict[str, torch.Tensor]) -> LatentModel:
    model = model_from_config(config["model"]["kind"], config["model"].get("config", {}))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ValueError(f"its weights do not match its config ({detail})")
    for key, ref in expected.items():
        t = tensors[key]
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"its weight {key} has shape {tuple(t.shape)}, the config needs {tuple(ref.shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"its weight {key} contains NaN or infinite values")
    model.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected}, strict=True)
    return model


def load_folder(folder: Path, device: str | torch.device | None = None) -> tuple[LatentModel, dict]:
    """Load a checkpoint folder: (model in eval mode on ``device``, its config.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"There is no checkpoint at {folder}.")
    try:
        config = read_config(folder)
        model = _build_and_fill(config, read_tensors(folder / WEIGHTS))
    except ValueError as e:
        raise ValueError(f"The checkpoint {folder.name!r} cannot be loaded: {e}.") from None
    model.checkpoint_name = config.get("name", folder.name)
    model.eval()
    if device is not None:
        model.to(device)
    return model, config


@dataclass
class CheckpointInfo:
    name: str
    path: Path
    ok: bool
    reason: str = ""
    kind: str = ""
    latent_dim: int = 0
    created: str = ""
    metrics: dict = field(default_factory=dict)
    dataset: str = ""


_SCAN_CACHE: dict[Path, tuple[tuple, CheckpointInfo]] = {}


def file_signature(folder: Path) -> tuple:
    """(mtime, size, inode) of config.json and the weights, None for a missing one: changes on any rewrite."""
    sig = []
    for fname in (CONFIG, WEIGHTS):
        try:
            st = (folder / fname).stat()
            sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            sig.append(None)
    return tuple(sig)


def inspect_checkpoint(folder: Path) -> CheckpointInfo:
    """Check one folder fully (config, weights, shapes, finiteness); cached until its files change."""
    folder = Path(folder)
    sig = file_signature(folder)
    cached = _SCAN_CACHE.get(folder)
    if cached and cached[0] == sig:
        return cached[1]
    info = CheckpointInfo(name=folder.name, path=folder, ok=False)
    try:
        validate_name(folder.name)
        config = read_config(folder, kinds=(*REGISTRY, *AUXILIARY_KINDS))
        info.kind = config["model"]["kind"]
        if info.kind in AUXILIARY_KINDS:
            _SCAN_CACHE[folder] = (sig, info)
            return info
        info.kind = config["model"]["kind"]
        info.latent_dim = int(config["model"].get("config", {}).get("latent_dim", 0))
        info.created = str(config.get("created", ""))
        info.metrics = config.get("metrics") or {}
        info.dataset = str((config.get("data") or {}).get("dataset", ""))
        _build_and_fill(config, read_tensors(folder / WEIGHTS))
        info.ok = True
    except ValueError as e:
        info.reason = str(e)
    _SCAN_CACHE[folder] = (sig, info)
    return info


def scan_checkpoints(root: Path | None = None) -> list[CheckpointInfo]:
    """Every checkpoint folder, usable or broken (with the reason), sorted by name."""
    root = Path(root or checkpoint_dir())
    _recover(root)
    if not root.is_dir():
        return []
    infos = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        info = inspect_checkpoint(entry)
        if info.kind in AUXILIARY_KINDS:
            continue  # e.g. the digit classifier: not a latent model, so not offered as one
        infos.append(info)
    return infos


def list_checkpoints(root: Path | None = None) -> list[str]:
    """The names of the checkpoints that load."""
    return [info.name for info in scan_checkpoints(root) if info.ok]


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> LatentModel:
    """Load a checkpoint by name (a slug under the checkpoints folder) or by ``pathlib.Path``.

    A string is always treated as a name, so user input such as ``'../app'`` is refused
    rather than followed; pass a ``Path`` to load a folder elsewhere on purpose, or
    ``"hf://user/name"`` for a checkpoint pushed to the Hugging Face Hub.
    """
    if isinstance(name_or_path, Path):
        folder = name_or_path
    elif isinstance(name_or_path, str) and name_or_path.startswith("hf://"):
        from .hub import download

        folder = download(name_or_path)
    else:
        folder = find(name_or_path)
    model, _ = load_folder(folder, device)
    return model
