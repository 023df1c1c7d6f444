"""Your own model in the app: a module defined here, checked once at start, then in every model list and
endpoint (through gradio_client against the launched app), and the `vaedemo serve --model-module` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]


class LinearVAE(nn.Module):
    """What a user might bring: a VAE vaedemo never trained, with its own encode and decode."""

    def __init__(self, latent: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Linear(784, 2 * latent)
        self.dec = nn.Linear(latent, 784)

    def encode(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-6, 2)

    def decode(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 28, 28)


class LinearAE(LinearVAE):
    def encode(self, x):
        return self.enc(x.flatten(1))[:, : self.dec.in_features], None


class FlatDecoder(LinearVAE):
    def decode(self, z):
        return torch.sigmoid(self.dec(z))  # (N, 784): not the (N, 1, 28, 28) the app needs


class LogitDecoder(LinearVAE):
    def decode(self, z):
        return self.dec(z).view(-1, 1, 28, 28) * 10  # logits, not probabilities


class BrokenEncoder(LinearVAE):
    def encode(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def build():
    """For `vaedemo serve --model-module tests/test_custom_model.py:build`."""
    return {"mine": LinearVAE()}


def build_bad():
    return {"broken": FlatDecoder()}


# ---------------------------------------------------------------------------------- the check at start


@pytest.mark.parametrize("module, words", [
    (FlatDecoder(), r"decode\(mu\) returned \(8, 784\); it must return \(8, 1, 28, 28\)"),
    (LogitDecoder(), r"probabilities in \[0, 1\] \(apply a sigmoid"),
    (BrokenEncoder(), r"encode\(x\) on 8 digits .* failed \(RuntimeError: mat1"),
    (nn.Linear(3, 3), r"needs encode\(x\) -> \(mu, logvar or None\) and decode\(z\)"),
    ("not a model", r"not a torch.nn.Module"),
])
def test_a_model_that_does_not_fit_is_refused_with_one_sentence(module, words):
    from vaedemo.custom import check_model

    with pytest.raises(ValueError, match=words) as info:
        check_model("mine", module)
    assert str(info.value).startswith("Not serving 'mine': ") and str(info.value).count(". ") <= 1


def test_a_fitting_model_is_wrapped_with_what_the_app_reads():
    from vaedemo.custom import check_model

    vae, ae = check_model("mine", LinearVAE()), check_model("mine-ae", LinearAE())
    assert (vae.latent_dim, vae.variational, vae.prior) == (6, True, None)  # no prior declared: N(0, I)
    assert (ae.latent_dim, ae.variational) == (6, False)
    z = torch.zeros(2, 6)
    torch.testing.assert_close(torch.sigmoid(vae.decode_logits(z)), vae.decode(z), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------- in the app


@pytest.fixture(scope="module")
def registered(app_url):
    from vaedemo.custom import register_models
    from vaedemo.inference import STORE, maps

    refusals = register_models({"mine": LinearVAE(), "mine-ae": LinearAE(), "tiny-vae": LinearVAE(),
                                "broken": FlatDecoder()})
    yield refusals
    for name in ("mine", "mine-ae"):
        STORE.unregister(name)
    maps.clear_cache()


def test_registration_refuses_a_checkpoints_name_and_a_bad_model_but_keeps_the_others(registered):
    from vaedemo.inference import STORE, checkpoint_choices

    assert registered == ["Not serving 'tiny-vae': A checkpoint named 'tiny-vae' exists already; give your model "
                          "another name.",
                          "Not serving 'broken': its decode(mu) returned (8, 784); it must return (8, 1, 28, 28) "
                          "pixel probabilities."]
    labels = dict((name, label) for label, name in checkpoint_choices())
    assert labels["mine"] == "mine · VAE · latent 6 · your model" and "AE · latent 6" in labels["mine-ae"]
    assert "tiny-vae" in labels and "broken" not in labels
    assert list(labels)[:2] == ["mine", "mine-ae"]  # yours first, so the app preselects yours
    with pytest.raises(ValueError, match="registered already"):
        STORE.register("mine", STORE.get("mine"), {}, 0)


@pytest.fixture(scope="module")
def client(app_url, registered):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_every_endpoint_works_for_your_model(client, digit_png):
    from gradio_client import handle_file
    from PIL import Image

    out = client.predict(handle_file(str(digit_png)), "mine", "mine-ae", api_name="/reconstruct")
    assert Image.open(out[0]).width >= 4 * 224 and "−ELBO" in out[1] and "mine-ae" in out[1]
    grid, _, note = client.predict("mine", 9, 1.0, 0, "any", api_name="/sample")
    assert Image.open(grid).format == "PNG" and "N(0, T²·I)" in note  # no prior declared: N(0, I)
    lerp, slerp, _, _ = client.predict("mine", None, None, 1, 7, 5, api_name="/interpolate")
    assert Image.open(lerp).size == Image.open(slerp).size
    trv, _, text = client.predict("mine-ae", None, 0, None, 5, 2.0, api_name="/traverse")
    assert Image.open(trv).format == "PNG" and "Rows, top to bottom" in text
    payload, _, note = client.predict("mine", "pca", 500, api_name="/latent_map")
    data = json.loads(payload)
    assert len(data["x"]) == 500 and data["method"] == "pca" and "mine" in note
    strip, note = client.predict("mine", "1, 2, 3, 4, 5", "6, 7, 8, 9, 10", None, 3, "-3, 0, 3",
                                 api_name="/attribute")
    assert Image.open(strip).format == "PNG" and "Strengths, left to right: -3, +0, +3." in note


def test_your_model_decodes_in_the_browser_from_the_apps_own_route(registered, app_url):
    """It exports, so the page can run it: its decoder.onnx, made in memory, is served from the app's route like a
    checkpoint's and computes what the module's own decode computes."""
    import numpy as np
    import onnxruntime as ort

    from vaedemo.inference import STORE, browser

    about = browser.browser_model("mine")
    assert about["latent_dim"] == 6 and about["encoder"] and not about["conditional"]
    with httpx.Client(base_url=app_url, timeout=60) as http:
        sent = http.get(f"vaedemo-static/onnx/mine/decoder.onnx?v={about['version']}")
    assert sent.status_code == 200
    session = ort.InferenceSession(sent.content, providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    (probs,) = session.run(None, {"z": z})
    with torch.no_grad():
        expected = STORE.get("mine").decode(torch.from_numpy(z)).numpy()
    assert probs.shape == (5, 1, 28, 28) and np.abs(probs - expected).max() <= 1e-4


def test_your_models_maps_stay_in_memory(registered, app_env):
    from vaedemo.inference import full_map

    assert not full_map("mine", "pca").from_disk
    assert not (app_env / "mine").exists() and not list(Path(app_env).glob("**/latent_map_*mine*"))


# ---------------------------------------------------------------------------------- the command


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_a_model_module_serves_it_and_refuses_a_bad_one(tmp_path):
    port = _free_port()
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(tmp_path), "VAEDEMO_DEVICE": "cpu",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    here = "tests/test_custom_model.py"
    proc = subprocess.Popen([sys.executable, "-m", "vaedemo", "serve", "--port", str(port),
                             "--model-module", f"{here}:build", "--model-module", f"{here}:build_bad",
                             "--model-module", "no/such/file.py:build"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, "the app did not start"
            time.sleep(0.5)
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        payload, _, _ = client.predict("mine", "pca", 500, api_name="/latent_map")
        assert len(json.loads(payload)["x"]) == 500
    finally:
        proc.terminate()  # uvicorn waits for open connections; the test needs none of them
        try:
            output = proc.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate(timeout=15)[0]
    assert "Not serving 'broken': its decode(mu) returned (8, 784)" in output
    assert "not serving the models of no/such/file.py:build: There is no Python file" in output
