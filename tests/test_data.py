"""Data: the bundled MNIST-10k, its fixed split, users' folders and zips, offline errors."""

import zipfile

import numpy as np
import pytest
from PIL import Image

from vaedemo.data import bundled_digits, load_dataset, load_npz, mnist10k


def test_bundled_mnist10k_is_real_and_balanced():
    x, y = bundled_digits()
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    counts = np.bincount(y, minlength=10)
    assert counts.min() > 800 and counts.sum() == 10_000
    # MNIST digits: a black border, ink in the centre
    assert x[:, :4, :].mean() < 2 and x[:, 10:18, 10:18].mean() > 60


def test_split_is_fixed_and_disjoint():
    a, b = mnist10k(), mnist10k()
    assert len(a.x_train) == 9000 and len(a.x_val) == 1000
    assert np.array_equal(a.x_val, b.x_val)
    train_set = {r.tobytes() for r in a.x_train}
    assert sum(r.tobytes() in train_set for r in a.x_val) < 5  # MNIST has a few exact duplicates at most


def test_full_datasets_offline_name_the_bundled_one(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_url", offline)
    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(ValueError, match="mnist-10k"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("cifar-100")


def _write_digits(folder, x, y):
    for i, (img, label) in enumerate(zip(x, y)):
        d = folder / f"class-{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - img).save(d / f"{i}.png")  # dark ink on white paper, as people draw


def test_user_folder_and_zip_become_a_dataset(tmp_path):
    x, y = bundled_digits()
    pick = np.random.default_rng(0).choice(len(x), 30, replace=False)
    _write_digits(tmp_path / "mine", x[pick], np.arange(30) % 3)
    (tmp_path / "mine" / "class-0" / "junk.png").write_bytes(b"not an image")
    ds = load_dataset(str(tmp_path / "mine"))
    assert ds.class_names == ["class-0", "class-1", "class-2"]
    assert len(ds.x_train) + len(ds.x_val) == 30 and ds.skipped == 1
    assert ds.x_train.dtype == np.uint8
    assert ds.x_train[:, :3].mean() < 5 < 60 < ds.x_train[:, 10:18, 10:18].mean()  # white digit on black again

    zpath = tmp_path / "mine.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((tmp_path / "mine").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "mine"))
        zf.writestr("../escape/evil.png", b"x")
    dz = load_dataset(str(zpath))
    assert dz.class_names == ["class-0", "class-1", "class-2"] and dz.skipped == 2
    assert not (tmp_path.parent / "escape").exists()


def test_npz_for_evaluate(tmp_path):
    x, y = bundled_digits()
    np.savez(tmp_path / "ok.npz", x=x[:10], y=y[:10])
    xx, yy = load_npz(tmp_path / "ok.npz")
    assert xx.shape == (10, 28, 28) and list(yy) == list(y[:10])
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="28"):
        load_npz(tmp_path / "bad.npz")
