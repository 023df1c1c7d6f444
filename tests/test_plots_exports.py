"""Figures carry the numbers they were given; downloads have the right sizes, frames and formats."""

import io
import json
import math
import zipfile

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from vaedemo import exports, plots
from vaedemo.training import EpochStats

HISTORY = [
    {"epoch": 1, "train_loss": 200.0, "val_loss": 180.0, "val_recon": 160.0, "val_kl": 20.0},
    {"epoch": 2, "train_loss": 150.0, "val_loss": 140.0, "val_recon": 120.0, "val_kl": 20.0},
]


def _digits(n, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28)).astype(np.float32)


# ---------------------------------------------------------------------------------- plots


def test_loss_curves_plot_the_history_values():
    fig = plots.loss_curves(HISTORY)
    assert isinstance(fig, go.Figure)
    traces = {t.name: t for t in fig.data}
    assert list(traces["train loss"].y) == [200.0, 150.0]
    assert list(traces["validation loss"].y) == [180.0, 140.0]
    assert list(traces["validation KL"].y) == [20.0, 20.0]
    assert list(traces["train loss"].x) == [1, 2]


def test_loss_curves_take_epoch_stats_and_skip_missing_values():
    stats = EpochStats(1, 10.0, 8.0, 2.0, float("nan"), 7.0, 1.0, 100.0, 1.0, 1.0, 1e-3)
    fig = plots.loss_curves([stats])
    names = {t.name for t in fig.data}
    assert "train loss" in names and "validation loss" not in names  # NaN is left out
    empty = plots.loss_curves([])
    assert len(empty.data) == 0 and empty.layout.annotations[0].text == "No epochs finished yet"


def test_latent_scatter_has_one_webgl_trace_per_label_and_a_marker_for_you():
    coords = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], np.float32)
    labels = np.array([3, 1, 3, 1])
    fig = plots.latent_scatter(coords, labels, indices=np.array([10, 11, 12, 13]), here=(0.5, 0.5))
    scatter = [t for t in fig.data if isinstance(t, go.Scattergl)]
    assert [t.name for t in scatter] == ["1", "3"]
    assert list(scatter[1].x) == [0, 2] and list(scatter[1].customdata) == [10, 12]
    assert scatter[0].marker.color != scatter[1].marker.color
    assert fig.data[-1].name == "you are here" and list(fig.data[-1].x) == [0.5]
    with pytest.raises(ValueError, match="coordinates"):
        plots.latent_scatter(coords[:, :1], labels)


def test_code_bars_show_sigma_as_error_bars():
    fig = plots.code_bars(np.array([0.5, -1.0]), np.array([0.1, 0.2]))
    assert list(fig.data[0].y) == [0.5, -1.0] and list(fig.data[0].error_y.array) == [0.1, 0.2]
    assert plots.code_bars(np.array([0.5, -1.0])).data[0].error_y.array is None


def test_norm_paths_and_kl_bars():
    t = np.linspace(0, 1, 3)
    fig = plots.norm_paths(t, np.array([3.0, 2.0, 3.0]), np.array([3.0, 3.0, 3.0]), typical_norm=3.0)
    assert [list(d.y) for d in fig.data] == [[3.0, 2.0, 3.0], [3.0, 3.0, 3.0]]
    fig = plots.kl_bars([(4, 2.5), (0, 1.0)])
    assert list(fig.data[0].x) == ["z4", "z0"] and list(fig.data[0].y) == [2.5, 1.0]


# ---------------------------------------------------------------------------------- exports


def test_image_grid_tiles_row_major():
    images = np.zeros((5, 28, 28), np.float32)
    images[4] = 1.0
    grid = exports.image_grid(images, ncols=3, scale=2, pad=1)
    assert grid.mode == "L" and grid.size == (2 * (3 * 28 + 2), 2 * (2 * 28 + 1))
    arr = np.asarray(grid)
    assert arr[2 * 40, 2 * 40] == 255  # image 4 is row 1, column 1
    assert arr[2 * 10, 2 * 10] == 0
    trav = exports.image_grid(np.zeros((2, 7, 28, 28)))  # a traversal: one row per dimension
    assert trav.size == (7 * 28, 2 * 28)
    for bad in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="columns"):
            exports.image_grid(images, ncols=bad)
    with pytest.raises(ValueError, match="stack"):
        exports.image_grid(np.zeros(5))


def test_png_bytes_round_trip():
    grid = exports.image_grid(_digits(4))
    data = exports.to_png_bytes(grid)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(grid))


def test_animated_gif_has_one_frame_per_image(tmp_path):
    frames = np.stack([np.full((28, 28), v, np.float32) for v in np.linspace(0, 1, 6)])
    data = exports.animated_gif(frames, fps=10, scale=2)
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (56, 56)
    assert gif.info["duration"] == 100 and gif.info["loop"] == 0  # loops forever
    assert "loop" not in Image.open(io.BytesIO(exports.animated_gif(frames, loop=False))).info
    path = exports.animated_gif(frames, tmp_path / "walk.gif", bounce=True)
    assert path.is_file() and Image.open(path).n_frames == 10  # forward, then back without repeating ends
    for fps in (0, float("nan"), 1000, "fast"):
        with pytest.raises(ValueError, match="Frames per second"):
            exports.animated_gif(frames, fps=fps)


def test_projector_bundle_is_in_embedding_projector_format():
    n, d = 10, 3
    codes = np.arange(n * d, dtype=np.float32).reshape(n, d) / 7
    labels = np.arange(n) % 4
    images = _digits(n)
    files = exports.projector_bundle(codes, labels, images, indices=np.arange(100, 100 + n))
    assert set(files) == {"tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.json"}
    rows = files["tensors.tsv"].decode().strip().split("\n")
    assert len(rows) == n and all(len(r.split("\t")) == d for r in rows)
    np.testing.assert_allclose([float(v) for v in rows[4].split("\t")], codes[4], rtol=1e-5)
    meta = files["metadata.tsv"].decode().strip().split("\n")
    assert meta[0] == "label\tindex" and len(meta) == n + 1 and meta[3] == "2\t102"
    sprite = Image.open(io.BytesIO(files["sprite.png"]))
    side = math.ceil(math.sqrt(n))
    assert sprite.size == (side * 28, side * 28)
    # Image 5 sits at row 1, column 1 of a 4-wide grid (row-major).
    tile = np.asarray(sprite)[28:56, 28:56]
    np.testing.assert_allclose(tile / 255.0, images[5], atol=1 / 255 + 1e-6)
    config = json.loads(files["projector_config.json"])["embeddings"][0]
    assert config["tensorShape"] == [n, d] and config["sprite"]["singleImageDim"] == [28, 28]
    assert config["tensorPath"] == "tensors.tsv" and config["metadataPath"] == "metadata.tsv"
    with zipfile.ZipFile(io.BytesIO(exports.zip_bytes(files))) as zf:
        assert sorted(zf.namelist()) == sorted(files)


def test_projector_bundle_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="N codes"):
        exports.projector_bundle(np.zeros((3, 2)), np.zeros(2), _digits(3))


def test_loss_curves_move_within_the_first_epoch():
    from vaedemo.plots import loss_curves

    steps = [(0.1, 540.0), (0.2, 420.0), (0.3, 300.0)]  # before any epoch has finished
    fig = loss_curves([], steps=steps)
    assert len(fig.data) == 1 and list(fig.data[0].x) == [0.1, 0.2, 0.3] and "smoothed" in fig.data[0].name
    assert not fig.layout.annotations  # no "No epochs finished yet": the curve already moves
    history = [{"epoch": 1, "train_loss": 310.0, "val_loss": 305.0, "val_recon": 290.0, "val_kl": 15.0}]
    names = [t.name for t in loss_curves(history, steps=steps).data]
    assert names[0].startswith("train loss (smoothed") and "validation loss" in names and "train loss" not in names
