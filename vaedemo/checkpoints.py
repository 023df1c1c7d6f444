"""The one checkpoint format: a folder per model with model.safetensors and config.json.

Writes are atomic (a temporary folder, fsync, then an exchange or rename), loading never unpickles,
and names are slugs that cannot leave the checkpoints folder. Saves and the recovery done by scans
take a lock file (``<root>/.lock``) so that several processes (the app, the CLI) can share a folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: saves and scans are then only safe between threads of one process
    fcntl = None

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import onnx_export
from .models import REGISTRY, LatentModel, config_to_dict, model_from_config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MAX_NAME = 64
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024  # refuse to read anything bigger into memory
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]|\.(?!\.)){0,62}[a-z0-9]$|^[a-z0-9]$")
_STALE_TMP_SECONDS = 3600  # a temporary folder this old is left over whatever its owner's pid says
AUXILIARY_KINDS = ("classifier",)  # folders saved in this format that are not latent models
LOCK_FILE = ".lock"  # in the checkpoints folder: a save's swap and a scan's recovery never interleave
_THREAD_LOCK = threading.Lock()  # the same between the threads of this process (and where fcntl is missing)
_WRITING: set[str] = set()  # names of the temporary folders this process's saves are writing now
_TMP = re.compile(r"^\.tmp-(?P<name>.+)@(?P<pid>\d+)-[^-]+$")  # .tmp-<name>@<pid of the saver>-<random>
_TRASH = re.compile(r"^\.trash-(?P<name>.+)-[0-9a-f]{8}$")


def checkpoint_dir() -> Path:
    """``$VAEDEMO_CHECKPOINT_DIR``, else ``checkpoints/`` at the repository root when run from a source
    checkout, else (an installed package, e.g. the ``vaedemo`` command) ``checkpoints/`` in the working folder."""
    env = os.environ.get("VAEDEMO_CHECKPOINT_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() or (repo / "checkpoints").is_dir():
        return repo / "checkpoints"
    return Path.cwd() / "checkpoints"


# Windows opens a device, not a folder, for these names (with any extension): a checkpoint copied there would break.
RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


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
    if name.split(".")[0] in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a name Windows reserves for a device; choose another (for example 'my-vae').")
    return name


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


def json_safe(value: Any) -> Any:
    """NaN/inf become None so config.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
    atomic step, e.g. the optimizer state for resuming, or a model card. The decoder and encoder as ONNX
    files for the page (``onnx_export``) go in the same step, except for a partial save between epochs
    (``meta["partial"]``); a model that cannot be exported is saved without them, and the page then decodes
    on the server.
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
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **(meta or {}),
    }
    files = {WEIGHTS: state_dict_bytes(model), CONFIG: json.dumps(json_safe(config), indent=2).encode()}
    if not (meta or {}).get("partial"):
        try:
            files.update(onnx_export.export_files(model))
        except ValueError as e:
            log.warning("saving %s without its ONNX files: %s", name, e)
    for fname, data in (extra_files or {}).items():
        if fname in files:
            raise ValueError(f"Refusing to write the extra file {fname!r}.")
        files[fname] = data
    return save_files(name, files, overwrite=overwrite, root=root)


def save_files(name: str, files: dict[str, bytes], *, overwrite: bool = False, root: Path | None = None) -> Path:
    """Write ``files`` (name → bytes) as the folder ``<root>/<name>/`` in one atomic step.

    Safe against other processes saving or scanning the same folder: the old checkpoint or the new
    one is there at every moment, and a failure is a ValueError with a sentence, never a lost run.
    """
    root = Path(root or checkpoint_dir())
    final = resolve(name, root)
    if final.exists() and not overwrite:
        raise ValueError(f"A checkpoint named {name!r} already exists; choose another name.")
    for fname in files:
        if "/" in fname or "\\" in fname or fname.startswith(".") or not fname:
            raise ValueError(f"Refusing to write the file {fname!r}.")
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}@{os.getpid()}-", dir=root))
        _WRITING.add(tmp.name)
        for fname, data in files.items():
            _write_synced(tmp / fname, data)
        _fsync_dir(tmp)
        with _root_lock(root):
            if final.exists() and not overwrite:  # another process created it meanwhile
                raise ValueError(f"A checkpoint named {name!r} already exists; choose another name.")
            _swap_in(tmp, final, root, name)
        _fsync_dir(root)
    except OSError as e:
        raise ValueError(
            f"The checkpoint {name!r} could not be saved ({e.strerror or type(e).__name__}); "
            "any earlier checkpoint of that name is unchanged."
        ) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)  # the new files on failure, the old ones after an exchange
            _WRITING.discard(tmp.name)
    return final


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """Hold the checkpoints folder's lock: exclusive, across threads and (with fcntl) across processes."""
    with _THREAD_LOCK:
        if fcntl is None:
            yield
            return
        try:
            fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only folder: nobody can rename anything in it, so there is nothing to guard
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock (as does the death of the process)


def _libc_renameat2():
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2  # glibc ≥ 2.28
    except (AttributeError, OSError, TypeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _libc_renameat2() if os.name == "posix" else None
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where the system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # an older kernel or a filesystem without exchange: the caller renames twice
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, final: Path, root: Path, name: str) -> None:
    """Put ``tmp`` in place of ``final``; called with the root lock held. ``tmp`` then holds the old files, if any."""
    if not final.exists():
        os.replace(tmp, final)
    elif not _exchange(tmp, final):
        # Move the old folder aside first; a save killed between the two renames is undone by _recover().
        trash = root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
        try:
            os.replace(tmp, final)
        except OSError:
            os.replace(trash, final)
            raise
        shutil.rmtree(trash, ignore_errors=True)


def _owner_alive(entry: str) -> bool | None:
    """Whether the save that made temporary folder ``entry`` still runs; None when its name has no pid."""
    match = _TMP.match(entry)
    if not match:
        return None
    pid = int(match["pid"])
    if pid == os.getpid():
        return entry in _WRITING  # e.g. the app restarted with the pid it had before (pid 1 in a container)
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows: leave it to the one-hour rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's), or we cannot tell: keep its folder
    return True


def _recover(root: Path, *, dead_owners: bool = False) -> list[Path]:
    """Restore a folder moved aside by an interrupted overwrite; drop temporary folders no save is writing.

    A temporary folder goes when it is over an hour old (no save takes that long: its pid was
    reused), or with ``dead_owners`` as soon as the process that made it (its pid is in its name) is gone.
    """
    try:
        names = [e.name for e in os.scandir(root)]
    except OSError:
        return []

    def stale(entry: str) -> bool:
        if not entry.startswith(".tmp-"):
            return False
        if dead_owners and _owner_alive(entry) is False:
            return True
        try:
            return time.time() - (root / entry).stat().st_mtime > _STALE_TMP_SECONDS
        except OSError:
            return False

    if not any(n.startswith(".trash-") or stale(n) for n in names):
        return []  # the common case: nothing to do, and no lock taken
    removed = []
    with _root_lock(root):  # a save in progress finishes its swap first, so what is left here is left over
        for entry in sorted(os.listdir(root)):
            path = root / entry
            try:
                match = _TRASH.match(entry)
                if match:
                    target = root / match["name"]
                    if not target.exists():
                        os.replace(path, target)
                    else:
                        shutil.rmtree(path, ignore_errors=True)
                        removed.append(path)
                elif stale(entry) and path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                pass
    return removed


def delete_checkpoint(name: str, root: Path | None = None) -> None:
    """Remove checkpoint ``name`` as one step: it is renamed out of the listing (to a temporary folder of
    this process, which ``clean_stale`` removes if a kill stops the deletion half-way), then deleted."""
    root = Path(root or checkpoint_dir())
    folder = resolve(name, root)
    if not folder.is_dir():
        raise ValueError(f"There is no checkpoint named {name!r}.")
    gone = root / f".tmp-{name}@{os.getpid()}-deleted{uuid.uuid4().hex[:8]}"
    with _root_lock(root):
        os.replace(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def clean_stale(root: Path | None = None) -> list[Path]:
    """Clean the checkpoints folder once at start: undo overwrites interrupted between their two renames and
    delete the temporary folders of saves whose process was killed. Returns the folders deleted.

    A temporary folder whose process is still alive (a save in progress in the CLI, say) is kept.
    """
    return _recover(Path(root or checkpoint_dir()), dead_owners=True)


def ensure_onnx(folder: Path) -> dict[str, Path]:
    """The ONNX files of checkpoint ``folder`` (``onnx_export``: decoder, and encoder but for a GAN), made now
    for a checkpoint saved before they existed. Each file is written atomically under the root lock, and only
    while the folder still holds the weights they were exported from (a save swapping in a new folder
    meanwhile brings its own). Raises ValueError when the model cannot be loaded or exported."""
    folder = Path(folder)
    wanted = [onnx_export.DECODER, onnx_export.ENCODER]
    have = {f: folder / f for f in wanted if (folder / f).is_file()}
    if onnx_export.DECODER in have and (onnx_export.ENCODER in have or read_config(folder)["model"]["kind"] == "gan"):
        return have
    sig = file_signature(folder)
    model, _ = load_folder(folder)
    files = onnx_export.export_files(model)
    try:
        with _root_lock(folder.parent):
            if file_signature(folder) == sig:
                for fname, data in files.items():
                    if not (folder / fname).is_file():
                        write_bytes_atomic(folder / fname, data)
    except OSError as e:  # a read-only folder (a Space): the caller serves the bytes from memory instead
        raise ValueError(f"The ONNX files of {folder.name!r} could not be written ({e.strerror}).") from e
    return {f: folder / f for f in files if (folder / f).is_file()}


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
        raise ValueError(
            f"its {path.name} is not a readable safetensors file ({str(e).splitlines()[0][:120]})"
        ) from None


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


def _unchanged_while(folder: Path, read):
    """(signature, read()) with the folder's files unchanged during the read: a save that swaps the folder in
    meanwhile would otherwise pair one save's config with another's weights. Tries three times."""
    for attempt in range(3):
        sig = file_signature(folder)
        result = read()
        if attempt == 2 or file_signature(folder) == sig:
            return sig, result


def load_folder(folder: Path, device: str | torch.device | None = None) -> tuple[LatentModel, dict]:
    """Load a checkpoint folder: (model in eval mode on ``device``, its config.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"There is no checkpoint at {folder}.")

    def read():
        try:
            config = read_config(folder)
            return config, _build_and_fill(config, read_tensors(folder / WEIGHTS))
        except ValueError as e:
            return e

    _, result = _unchanged_while(folder, read)
    if isinstance(result, ValueError):
        raise ValueError(f"The checkpoint {folder.name!r} cannot be loaded: {result}.") from None
    config, model = result
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
    command: str = ""  # what made it, e.g. the CLI line, or runs.APP_COMMAND for a run started in the app


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
    cached = _SCAN_CACHE.get(folder)
    if cached and cached[0] == file_signature(folder):
        return cached[1]
    sig, info = _unchanged_while(folder, lambda: _inspect(folder))
    _SCAN_CACHE[folder] = (sig, info)
    return info


def _inspect(folder: Path) -> CheckpointInfo:
    info = CheckpointInfo(name=folder.name, path=folder, ok=False)
    try:
        validate_name(folder.name)
        config = read_config(folder, kinds=(*REGISTRY, *AUXILIARY_KINDS))
        info.kind = config["model"]["kind"]
        if info.kind in AUXILIARY_KINDS:
            return info
        info.latent_dim = int(config["model"].get("config", {}).get("latent_dim", 0))
        info.created = str(config.get("created", ""))
        info.metrics = config.get("metrics") or {}
        info.dataset = str((config.get("data") or {}).get("dataset", ""))
        info.command = str(config.get("command") or "")
        _build_and_fill(config, read_tensors(folder / WEIGHTS))
        info.ok = True
    except ValueError as e:
        info.reason = str(e)
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
