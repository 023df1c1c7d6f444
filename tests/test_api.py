"""Every endpoint through gradio_client against the launched app (uvicorn in a background thread)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _health_ok(client) -> None:
    assert client.predict(api_name="/health")["status"] == "ok"


def test_every_action_has_its_named_endpoint(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    named = {"/reconstruct", "/sample", "/interpolate", "/traverse", "/latent_map", "/decode", "/train", "/health"}
    assert named <= set(api)
    names = [p["parameter_name"] for p in api["/reconstruct"]["parameters"]]
    assert names[:2] == ["image", "checkpoint"]
    # private UI plumbing (sketch, clicks, tab refreshes) stays out of the API
    assert not any(k in api for k in ("/reconstruct_sketch", "/map_point", "/refresh_checkpoint"))


def test_reconstruct(client, digit_png):
    out = client.predict(handle_file(str(digit_png)), "tiny-vae", "tiny-ae", api_name="/reconstruct")
    panel, scores, code, neighbours = out  # one picture: input, reconstructions, error map, q(z|x) decodes
    assert Image.open(panel).format == "PNG"  # PNG, never lossy webp
    assert Image.open(panel).width >= 4 * 224 and Image.open(panel).height >= 224 + 84  # four tiles, a strip
    assert "−ELBO" in scores and "tiny-ae" in scores
    assert code["type"] == "plotly" and neighbours.count('class="vd-thumb"') == 5  # cut from the page's sprite


def test_reconstruct_refuses_bad_files_with_a_sentence(client, tmp_path, digit_png):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"plain text pretending to be a picture")
    with pytest.raises(AppError, match="not an image we can read"):
        client.predict(handle_file(str(junk)), "tiny-vae", "", api_name="/reconstruct")
    with pytest.raises(AppError, match="not a valid checkpoint name"):
        client.predict(handle_file(str(digit_png)), "../../etc/passwd", "", api_name="/reconstruct")
    _health_ok(client)


def test_sample_is_reproducible(client):
    a = client.predict("tiny-vae", 9, 1.0, 11, "any", api_name="/sample")
    b = client.predict("tiny-vae", 9, 1.0, 11, "any", api_name="/sample")
    assert Image.open(a[0]).tobytes() == Image.open(b[0]).tobytes()
    assert Image.open(a[1]["value"] if isinstance(a[1], dict) else a[1]).format == "PNG"
    cvae = client.predict("tiny-cvae", 4, 0.5, 0, "3", api_name="/sample")
    assert Image.open(cvae[0]).format == "PNG"
    with pytest.raises(AppError, match="less than minimum value 0.1"):  # Gradio's own slider check
        client.predict("tiny-vae", 4, 0, 0, "any", api_name="/sample")
    with pytest.raises(AppError, match="seed must be a whole number"):
        client.predict("tiny-vae", 4, 1.0, 2.5, "any", api_name="/sample")


def test_interpolate_and_traverse(client, digit_png):
    lerp, slerp, norms, gif = client.predict("tiny-vae", handle_file(str(digit_png)), None, 0, 5, 8,
                                             api_name="/interpolate")
    assert Image.open(lerp).size == Image.open(slerp).size
    assert Image.open(gif["value"] if isinstance(gif, dict) else gif).format == "GIF"
    assert "slerp" in norms["plot"]
    grid, gif, text = client.predict("tiny-ae", None, 12, [1, 3], 5, 2.0, api_name="/traverse")
    assert Image.open(grid).format == "PNG" and "z1, z3" in text


def test_latent_map_returns_points_and_a_manifold_grid(client):
    payload, manifold, note = client.predict("tiny-vae", "pca", 1000, api_name="/latent_map")
    data = json.loads(payload)
    assert len(data["x"]) == 1000 and set(data["label"]) <= set(range(10))
    assert Image.open(manifold["value"] if isinstance(manifold, dict) else manifold).size == (420, 420)
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("tiny-vae", "isomap", 1000, api_name="/latent_map")


def _place_codes(live: dict, places: list[tuple[float, float]]) -> np.ndarray:
    """The codes behind places of a PCA map, from the inverse the /latent_map payload ships (mean + [x, y]·W)."""
    inv = live["inverse"]
    assert inv["method"] == "pca"
    mean = np.frombuffer(base64.b64decode(inv["mean"]), "<f4")
    components = np.frombuffer(base64.b64decode(inv["components"]), "<f4").reshape(2, -1)
    return mean + np.asarray(places, np.float32) @ components


def test_decode_takes_codes_computed_from_the_latent_maps_payload(client):
    from vaedemo import inference

    payload, _, _ = client.predict("tiny-vae", "pca", 1000, api_name="/latent_map")
    live = json.loads(payload)["live"]
    places = [(-1.0, 0.5), (0.3, -0.2), (1.2, 1.0)]
    codes = _place_codes(live, places)
    probs = np.asarray(client.predict("tiny-vae", codes.tolist(), None, api_name="/decode"))
    assert probs.shape == (3, 784) and 0 <= probs.min() and probs.max() <= 1
    for (x, y), got in zip(places, probs):  # the same digit the map's own decode of that place gives
        assert np.abs(got - inference.decode_at("tiny-vae", "pca", x, y).image.reshape(-1)).max() <= 1e-3
    assert np.abs(probs[0] - probs[1]).mean() > 1e-3  # different places, different digits

    # A conditional model decodes each code as the digit it is told.
    dim = inference.checkpoint_info("tiny-cvae")["latent_dim"]
    twice = np.asarray(client.predict("tiny-cvae", [[0.0] * dim] * 2, [3, 8], api_name="/decode"))
    assert np.abs(twice[0] - twice[1]).mean() > 1e-3

    # Bad codes get a sentence.
    for codes, labels, words in [([[0.0] * 3], None, "lists of 2 numbers"),
                                 ([[1e30, 0.0]], None, "finite numbers within"),
                                 ([[0.0, 0.0]] * 300, None, "1 to 256"), ("zeros", None, "lists of 2 numbers")]:
        with pytest.raises(AppError, match=words):
            client.predict("tiny-vae", codes, labels, api_name="/decode")
    with pytest.raises(ValueError, match="finite"):  # JSON cannot carry NaN; a Python caller can
        inference.decode_codes("tiny-vae", [[float("nan"), 0.0]])
    with pytest.raises(AppError, match="one label for all the codes or one per code"):
        client.predict("tiny-cvae", [[0.0] * dim] * 3, [1, 2], api_name="/decode")
    _health_ok(client)


def test_tsne_map_works_through_the_api(client):
    payload, _, _ = client.predict("tiny-ae", "tsne", 500, api_name="/latent_map")
    data = json.loads(payload)
    assert data["method"] == "tsne" and len(data["x"]) == 500 and data["axis"][0].startswith("t-SNE")


def test_train_streams_updates_and_the_model_can_be_used_at_once(client, app_env):
    job = client.submit("vae", "mnist-10k", 2, 1.0, 1, 64, 0.002, "api-run", 10, api_name="/train")  # a learnt prior
    first = next(job)  # the run has started
    assert "api-run" in first[5]
    # a second visitor is told the trainer is busy, and how far the run is
    with pytest.raises(AppError, match=r"Training is busy: another run is going \(\d+% done"):
        client.predict("vae", "mnist-10k", 2, 1.0, 1, 64, 0.002, "second-run", api_name="/train")
    updates = [first, *job]
    assert len(updates) >= 3
    final = updates[-1]
    assert "api-run" in final[5] and "saved" in final[5]
    assert final[1]["type"] == "plotly"  # the loss curves
    # the new checkpoint works in every endpoint without a restart
    grid = client.predict("api-run", 4, 1.0, 0, "any", api_name="/sample")[0]
    assert Image.open(grid).format == "PNG"
    config = json.loads((app_env / "api-run" / "config.json").read_text())
    assert config["model"]["config"]["prior_components"] == 10
    with pytest.raises(AppError, match="already exists"):
        client.predict("vae", "mnist-10k", 2, 1.0, 1, 64, 0.002, "api-run", api_name="/train")


def test_training_settings_are_checked(client):
    with pytest.raises(AppError, match="greater than maximum value 3"):  # the slider's cap is the server's
        client.predict("vae", "mnist-10k", 2, 1.0, 4, 64, 0.001, "too-long", api_name="/train")
    with pytest.raises(AppError, match="not a valid checkpoint name"):
        client.predict("vae", "mnist-10k", 2, 1.0, 1, 64, 0.001, "Bad Name!", api_name="/train")
    with pytest.raises(AppError, match="Latent dim must be a whole number"):
        client.predict("vae", "mnist-10k", 2.5, 1.0, 1, 64, 0.001, "zero-latent", api_name="/train")
    _health_ok(client)


def test_health_and_static_files(client, app_url):
    h = client.predict(api_name="/health")
    assert h["version"] and h["device"] == "cpu" and "training_enabled" in h
    with httpx.Client(base_url=app_url, timeout=30) as http:
        js = http.get("vaedemo-static/plotly.min.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"] and b"plotly" in js.content[:200]
        sprite = http.get("vaedemo-static/digits.png")
        assert sprite.status_code == 200
        from io import BytesIO

        assert Image.open(BytesIO(sprite.content)).size == (2800, 2800)
        assert http.get("monitoring").status_code in (403, 404)
        page = http.get("/").text
        assert "cdn.plot.ly" not in page and "cdn.jsdelivr" not in page


def test_uploads_over_the_limit_get_413(app_url, tmp_path):
    from vaedemo.images import MAX_UPLOAD_BYTES

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1024))
    with httpx.Client(base_url=app_url, timeout=60) as http, big.open("rb") as f:
        r = http.post("gradio_api/upload", files={"files": ("big.png", f, "image/png")})
    assert r.status_code == 413
