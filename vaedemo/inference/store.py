"""The process-wide cache of loaded models: each checkpoint loaded once, shared read-only by every request.

Models handed over in memory (``vaedemo.serve(models=...)``) are registered here beside the checkpoints,
under names no checkpoint folder has."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import CONFIG, WEIGHTS, file_signature, load_folder, resolve, validate_name
from ..device import pick_device


class KeyedLocks:
    """One lock per key, for "one builder per key, the others wait for its result".

    A key's lock exists only while someone holds or waits for it, so the table never outgrows the
    requests in flight (a dict of locks per key would keep one for every checkpoint ever asked for).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Any, tuple[threading.Lock, int]] = {}  # key → (lock, holders and waiters)

    @contextlib.contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            lock = lock or threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


def _signature(folder: Path) -> tuple:
    """The checkpoint's file signature (checkpoints.file_signature), refusing a folder with a file missing."""
    sig = file_signature(folder)
    for fname, part in zip((CONFIG, WEIGHTS), sig):
        if part is None:
            raise ValueError(f"The checkpoint {folder.name!r} is incomplete (its {fname} is missing).")
    return sig


def weights_fingerprint(folder: Path) -> int:
    """A content hash of the weights: unlike mtimes it survives a git clone, so shipped maps stay valid."""
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).digest()
    return int.from_bytes(digest[:7], "big")  # fits an int64 in the map files


@dataclass(eq=False)
class Entry:
    """One loaded checkpoint plus statistics computed once on first use (under ``lock``)."""

    name: str
    folder: Path
    sig: tuple  # checkpoints.file_signature when loaded; a different one means the folder was saved again
    model: torch.nn.Module  # a LatentModel, or the digit classifier in READERS
    config: dict
    lock: threading.RLock = field(default_factory=threading.RLock)
    extras: dict = field(default_factory=dict)
    in_memory: bool = False  # registered from memory: no files, so nothing (maps) is cached on disk for it

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> int:
        """The weights' content hash (weights_fingerprint), read once and only by what needs it (the maps)."""
        return self.extra("fingerprint", lambda e: weights_fingerprint(e.folder))

    def extra(self, key: str, compute: Callable[[Entry], Any]) -> Any:
        """``compute(self)`` once, then the cached value (statistics, maps, the fingerprint)."""
        value = self.extras.get(key)
        if value is None:
            with self.lock:
                value = self.extras.get(key)
                if value is None:
                    value = compute(self)
                    self.extras[key] = value
        return value


class ModelStore:
    """Process-wide, thread-safe cache of loaded models, keyed by checkpoint folder.

    Models are in eval mode and are never changed by requests. A checkpoint saved again under the
    same name (its files' signature changes) is reloaded on the next call; keying by folder means a
    changed $VAEDEMO_CHECKPOINT_DIR never mixes two checkpoints. At most ``max_models`` stay loaded
    (LRU). ``load(folder, device)`` returns (model, config) and raises ValueError with the reason.
    """

    def __init__(self, max_models: int = 8, load: Callable[[Path, Any], tuple[torch.nn.Module, dict]] = load_folder):
        self.max_models = max_models
        self._load = load
        self._lock = threading.Lock()  # guards _entries
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # folder → entry
        self._loading = KeyedLocks()  # one loader per folder; others wait for it
        self._registered: dict[str, Entry] = {}  # name → an in-memory model's entry (never evicted)

    def register(self, name: Any, model: torch.nn.Module, config: dict, fingerprint: int) -> Entry:
        """Serve ``model`` (a LatentModel, eval mode) under ``name`` beside the checkpoints until unregistered.

        ``fingerprint`` identifies its weights (the maps are keyed by it). A name that a checkpoint folder
        or another registered model already has is refused with a sentence."""
        name = validate_name(name)
        if resolve(name).is_dir():
            raise ValueError(f"A checkpoint named {name!r} exists already; give your model another name.")
        with self._lock:
            if name in self._registered:
                raise ValueError(f"A model named {name!r} is registered already; give your model another name.")
            model.eval().requires_grad_(False)
            entry = Entry(name, Path("<memory>") / name, ("memory", name), model, config, in_memory=True)
            entry.extras["fingerprint"] = int(fingerprint)
            self._registered[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)

    def registered(self) -> list[str]:
        """Names of the models registered in memory, in the order they came."""
        with self._lock:
            return list(self._registered)

    def _cached(self, key: str, sig: tuple) -> Entry | None:
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached.sig == sig:
                self._entries.move_to_end(key)
                return cached
        return None

    def entry(self, name: Any) -> Entry:
        """The loaded checkpoint ``name`` (or registered model); ValueError for a bad, missing or broken name."""
        with self._lock:
            registered = self._registered.get(name) if isinstance(name, str) else None
        if registered is not None:
            return registered
        folder = resolve(validate_name(name))
        if not folder.is_dir():
            raise ValueError(f"There is no checkpoint named {name!r}; pick one from the list.")
        sig = _signature(folder)
        key = str(folder)
        cached = self._cached(key, sig)
        if cached is not None:
            return cached
        with self._loading.hold(key):
            cached = self._cached(key, sig)
            if cached is not None:
                return cached
            model, config = self._load(folder, pick_device())  # raises ValueError with the reason
            model.eval().requires_grad_(False)
            entry = Entry(name, folder, sig, model, config)
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_models:
                    self._entries.popitem(last=False)
        return entry

    def get(self, name: Any) -> torch.nn.Module:
        """The loaded model (eval mode, on ``pick_device()``); ValueError for a bad, missing or broken name."""
        return self.entry(name).model

    def loaded(self) -> list[str]:
        """Names of the checkpoints in memory, least recently used first."""
        with self._lock:
            return [e.name for e in self._entries.values()]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


STORE = ModelStore()


def _load_classifier(folder: Path, device: Any) -> tuple[torch.nn.Module, dict]:
    from ..classifier import load_classifier

    return load_classifier(folder.name).to(device), {}


READERS = ModelStore(max_models=1, load=_load_classifier)  # the digit classifier, reloaded when saved again
