"""The ONNX files the page runs in the browser: they compute what torch computes, for every model kind, are
written by the save that writes the weights, and are made on first use for a checkpoint saved before them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vaedemo import checkpoints, inference, onnx_export
from vaedemo.models import build_model

# name → (kind, settings): small random networks, every kind the page can decode
KINDS = {
    "ae": ("ae", {"latent_dim": 3, "channels": (4, 8, 8), "hidden_dim": 16}),
    "vae": ("vae", {"latent_dim": 5, "hidden_dim": 32}),
    "conv-vae": ("conv-vae", {"latent_dim": 4, "channels": (4, 8, 8), "hidden_dim": 16}),
    "cvae": ("cvae", {"latent_dim": 3, "hidden_dim": 32}),
    "mixture-prior vae": ("vae", {"latent_dim": 4, "hidden_dim": 32, "prior_components": 5}),
    "gan": (
        "gan",
        {"latent_dim": 6, "g_channels": (8, 4), "d_channels": (4, 8), "e_channels": (4, 8), "hidden_dim": 16},
    ),
}
TOLERANCE = 1e-4  # max abs difference on pixel probabilities (and codes)


def _tiny(kind: str, settings: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(kind, **settings)
    # Batch-norm statistics away from their (0, 1) start, so a graph that ignored them would be caught.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def _session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[labels]


@pytest.mark.parametrize("name", list(KINDS))
def test_onnx_files_compute_what_torch_computes(name):
    kind, settings = KINDS[name]
    model = _tiny(kind, settings)
    files = onnx_export.export_files(model)
    assert model.training is False  # the caller's model is left as it was

    rng = np.random.default_rng(0)
    n = 7  # not the batch size the graph was traced with
    z = rng.standard_normal((n, model.latent_dim)).astype(np.float32) * 1.5
    labels = rng.integers(0, 10, n)
    feeds = {"z": z}
    if model.conditional:
        feeds["y"] = _one_hot(labels)
    probs = _session(files[onnx_export.DECODER]).run(["probs"], feeds)[0]
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z), torch.from_numpy(labels) if model.conditional else None)
    assert probs.shape == (n, 1, 28, 28)
    assert np.abs(probs - expected.numpy()).max() <= TOLERANCE

    if kind == "gan":  # its encoder is a search (GAN inversion): the page asks the server
        assert onnx_export.ENCODER not in files
        return
    x = rng.random((n, 1, 28, 28)).astype(np.float32)
    feeds = {"x": x, **({"y": _one_hot(labels)} if model.conditional else {})}
    enc = _session(files[onnx_export.ENCODER])
    outs = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, feeds)))
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(x), torch.from_numpy(labels) if model.conditional else None)
    assert np.abs(outs["mu"] - mu.numpy()).max() <= TOLERANCE
    if logvar is None:
        assert set(outs) == {"mu"}
    else:
        assert np.abs(outs["logvar"] - logvar.numpy()).max() <= TOLERANCE


def test_a_save_writes_the_onnx_files_beside_the_weights(tmp_path):
    model = _tiny(*KINDS["cvae"])
    folder = checkpoints.save_checkpoint(model, "saved-cvae", root=tmp_path)
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "config.json", "decoder.onnx", "encoder.onnx"}
    loaded, _ = checkpoints.load_folder(folder)
    z = np.zeros((1, 3), np.float32)
    probs = _session((folder / "decoder.onnx").read_bytes()).run(None, {"z": z, "y": _one_hot(np.array([4]))})[0]
    with torch.no_grad():
        assert np.abs(probs - loaded.decode(torch.from_numpy(z), torch.tensor([4])).numpy()).max() <= TOLERANCE

    # Overwriting swaps in the new model's files with its weights, in the same step.
    other = _tiny("cvae", {**KINDS["cvae"][1], "hidden_dim": 24})
    checkpoints.save_checkpoint(other, "saved-cvae", root=tmp_path, overwrite=True)
    fresh = _session((folder / "decoder.onnx").read_bytes()).run(None, {"z": z, "y": _one_hot(np.array([4]))})[0]
    with torch.no_grad():
        assert np.abs(fresh - other.decode(torch.from_numpy(z), torch.tensor([4])).numpy()).max() <= TOLERANCE
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_a_partial_save_between_epochs_skips_them(tmp_path):
    folder = checkpoints.save_checkpoint(_tiny(*KINDS["vae"]), "partial", root=tmp_path, meta={"partial": True})
    assert not (folder / "decoder.onnx").exists()


def test_a_checkpoint_saved_before_gets_its_files_on_first_use(tmp_path):
    folder = checkpoints.save_checkpoint(_tiny(*KINDS["conv-vae"]), "old-one", root=tmp_path)
    for f in ("decoder.onnx", "encoder.onnx"):
        (folder / f).unlink()  # as a checkpoint saved before the exports existed
    config_before = (folder / "config.json").read_bytes()
    files = checkpoints.ensure_onnx(folder)
    assert set(files) == {"decoder.onnx", "encoder.onnx"}
    assert all(p.is_file() and p.parent == folder for p in files.values())
    assert (folder / "config.json").read_bytes() == config_before  # the checkpoint itself is untouched
    model, _ = checkpoints.load_folder(folder)
    x = np.full((2, 1, 28, 28), 0.2, np.float32)
    mu = _session(files["encoder.onnx"].read_bytes()).run(["mu"], {"x": x})[0]
    with torch.no_grad():
        assert np.abs(mu - model.encode(torch.from_numpy(x))[0].numpy()).max() <= TOLERANCE
    stamp = files["decoder.onnx"].stat().st_mtime_ns
    assert checkpoints.ensure_onnx(folder)["decoder.onnx"].stat().st_mtime_ns == stamp  # made once


def test_a_gan_checkpoint_has_only_a_decoder(tmp_path):
    folder = checkpoints.save_checkpoint(_tiny(*KINDS["gan"]), "tiny-gan", root=tmp_path)
    assert (folder / "decoder.onnx").is_file() and not (folder / "encoder.onnx").exists()
    assert set(checkpoints.ensure_onnx(folder)) == {"decoder.onnx"}
    assert json.loads((folder / "config.json").read_text())["model"]["kind"] == "gan"


def test_the_app_serves_the_runtime_and_the_models_compressed(app_url):
    """The page's downloads come from the app itself (no CDN): the WASM runtime as application/wasm, brotli or
    gzip as the browser accepts, and a checkpoint's ONNX files; a GAN's missing encoder is a 404."""
    import gzip

    import brotli
    import httpx

    with httpx.Client(base_url=app_url, timeout=60) as http:
        for accept, decompress in (("br", brotli.decompress), ("gzip", gzip.decompress)):
            url = "vaedemo-static/ort/ort-wasm-simd-threaded.wasm"
            with http.stream("GET", url, headers={"Accept-Encoding": accept}) as r:
                sent = b"".join(r.iter_raw())  # the body as it came over the wire
            assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
            assert r.headers["content-encoding"] == accept
            raw = decompress(sent)
            assert raw[:4] == b"\0asm" and len(sent) < len(raw) / 3
        js = http.get("vaedemo-static/ort/ort.wasm.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "ONNX Runtime Web" in js.text
        assert http.get("vaedemo-static/ort/package.json").status_code == 404
        decoder = http.get("vaedemo-static/onnx/tiny-vae/decoder.onnx")
        assert decoder.status_code == 200
        probs = _session(decoder.content).run(None, {"z": np.zeros((3, 2), np.float32)})[0]
        assert probs.shape == (3, 1, 28, 28)
        assert http.get("vaedemo-static/onnx/no-such-model/decoder.onnx").status_code == 404
        assert http.get("vaedemo-static/onnx/tiny-vae/weights.onnx").status_code == 404
        # the bundled digits' codes for the sketchpad's nearest digits: the header's sizes, the labels, the codes
        codes = http.get("vaedemo-static/codes/tiny-vae.bin")
        assert codes.status_code == 200
        n, d, r = np.frombuffer(codes.content[:12], "<i4")
        assert (n, d) == (10000, 2) and 1 <= r <= d
        labels = np.frombuffer(codes.content[-n:], np.uint8)
        assert np.array_equal(labels, inference.bundled()[1])
        assert len(codes.content) == 12 + 4 * d + 4 * r * d + 2 * n * r + n
        for bad in ("no-such-model", "..%2F..%2Fetc%2Fpasswd", "%00"):
            assert http.get(f"vaedemo-static/codes/{bad}.bin").status_code == 404, bad


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def _latent_checkpoints(root: Path) -> list[Path]:
    """The shipped folders of latent models (not the digit classifier)."""
    return sorted(
        p
        for p in root.iterdir()
        if (p / "config.json").is_file()
        and json.loads((p / "config.json").read_text())["model"]["kind"] not in checkpoints.AUXILIARY_KINDS
    )


@pytest.mark.parametrize("folder", _latent_checkpoints(SHIPPED), ids=lambda p: p.name)
def test_each_shipped_checkpoints_onnx_files_match_its_weights(folder):
    """Read only: the files the page downloads decode what the checkpoint's own weights decode, and the folder
    stays within 50 MB."""
    assert (folder / "decoder.onnx").is_file(), f"run: python -m vaedemo export-onnx {folder.name}"
    model, _ = checkpoints.load_folder(folder)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, model.latent_dim)).astype(np.float32)
    labels = np.arange(8) % 10
    feeds = {"z": z, **({"y": _one_hot(labels)} if model.conditional else {})}
    probs = _session((folder / "decoder.onnx").read_bytes()).run(["probs"], feeds)[0]
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z), torch.from_numpy(labels) if model.conditional else None)
    assert np.abs(probs - expected.numpy()).max() <= TOLERANCE
    assert (folder / "encoder.onnx").is_file() == onnx_export.has_encoder(model)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 50 * 1024 * 1024
