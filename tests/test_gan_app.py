"""The GAN in every tab: each endpoint through gradio_client, the Train tab's GAN views, and Chromium with the
GAN selected on each tab (issue 16: "every tab works with the GAN selected")."""

from __future__ import annotations

import json

import pytest
from PIL import Image

NO_PX = "an implicit model defines no p(x)"
NAME = "tiny-gan"


@pytest.fixture(scope="module")
def tiny_gan(app_env):
    """A small GAN saved beside the other tiny checkpoints (its generator is cheap enough that inverting the
    10,000 map digits takes seconds); removed again at the end so later modules see the usual set."""
    import torch

    from vaedemo.checkpoints import delete_checkpoint, save_checkpoint
    from vaedemo.data import mnist10k
    from vaedemo.models import build_model
    from vaedemo.training import TrainConfig, train

    torch.manual_seed(0)
    model = build_model("gan", latent_dim=8, g_channels=(16, 8), d_channels=(8, 16), e_channels=(8, 16),
                        hidden_dim=32, inversion_steps=5)
    train(model, mnist10k().limit(600), TrainConfig(epochs=2, batch_size=64, lr=1e-3, device="cpu"))
    save_checkpoint(model, NAME, meta={"data": {"dataset": "mnist-10k"}}, root=app_env)
    yield NAME
    delete_checkpoint(NAME, app_env)


@pytest.fixture(scope="module")
def client(app_url, tiny_gan):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _path(value):
    return value["value"] if isinstance(value, dict) else value


def test_every_endpoint_answers_for_a_gan(client, digit_png):
    from gradio_client import handle_file

    panel, scores, code, neighbours = client.predict(
        handle_file(str(digit_png)), NAME, "tiny-vae", api_name="/reconstruct")
    assert Image.open(panel).width >= 4 * 224 and neighbours.count('class="vd-thumb"') == 5
    # the GAN's column says why it has no likelihood; the compared VAE's still has one
    assert NO_PX in scores and "search for the nearest digit" in scores and "−ELBO" in scores
    assert "found by inversion" in json.dumps(code)
    assert Image.open(panel).height < 224 + 84  # a GAN has no q(z|x) to draw other decodes from

    grid, _, note = client.predict(NAME, 9, 1.0, 3, "any", api_name="/sample")
    again = client.predict(NAME, 9, 1.0, 3, "any", api_name="/sample")[0]
    assert Image.open(grid).tobytes() == Image.open(again).tobytes()  # fixed noise, same digits
    lerp, slerp, _, gif = client.predict(NAME, None, None, 1, 7, 6, api_name="/interpolate")
    assert Image.open(lerp).size == Image.open(slerp).size and Image.open(_path(gif)).format == "GIF"
    trv, _, text = client.predict(NAME, None, 4, None, 5, 2.0, api_name="/traverse")
    assert Image.open(trv).format == "PNG" and "Rows, top to bottom" in text
    payload, _, note = client.predict(NAME, "pca", 500, api_name="/latent_map")
    data = json.loads(payload)
    assert len(data["x"]) == 500 and data["method"] == "pca" and len(set(data["x"])) > 400
    strip, note = client.predict(NAME, "1, 2, 3, 4, 5", "6, 7, 8, 9, 10", None, 3, "-3, 0, 3", api_name="/attribute")
    assert Image.open(strip).format == "PNG" and "Strengths, left to right" in note


def test_train_tab_trains_a_gan_and_shows_both_players(client, app_env):
    job = client.submit("gan", "mnist-10k", 8, 1.0, 2, 64, 0.001, "api-gan", api_name="/train")
    updates = list(job)
    final = updates[-1]
    assert "api-gan" in final[5] and "saved" in final[5]
    names = {t.get("name") for t in json.loads(final[1]["plot"])["data"]}
    assert any("generator" in str(n).lower() for n in names) and any("discriminator" in str(n).lower() for n in names)
    hist = json.loads(final[4]["plot"])["data"]  # the discriminator's scores on real and generated digits
    assert {t["type"] for t in hist} == {"histogram"} and len(hist) == 2
    assert Image.open(_path(final[3])).format == "PNG"  # the fixed-noise grid
    config = json.loads((app_env / "api-gan" / "config.json").read_text())
    assert config["model"]["kind"] == "gan" and config["command"].startswith("vaedemo app")
    grid = client.predict("api-gan", 4, 1.0, 0, "any", api_name="/sample")[0]
    assert Image.open(grid).format == "PNG"


@pytest.mark.browser
def test_every_tab_works_with_the_gan_selected(app_url, tiny_gan, artifacts):
    from test_browser import _src, _wait_new_src, open_app

    def choose(page, dropdown: str):
        page.locator(f"#{dropdown} input").click()
        page.locator(f"#{dropdown} [data-testid=dropdown-option][aria-label*='{NAME}']").click()

    with open_app(app_url) as page:
        choose(page, "rec-checkpoint")  # Reconstruct: the first example again, now inverted by the GAN
        page.wait_for_function(f"() => document.querySelector('#rec-scores').innerText.includes('{NO_PX}')")
        page.wait_for_selector("#rec-output img")
        page.screenshot(path=str(artifacts / "gan-reconstruct.png"), full_page=True)

        page.get_by_role("tab", name="Latent map").click()
        choose(page, "map-checkpoint")
        page.locator("#map-draw").click()
        page.wait_for_function(f"() => document.querySelector('#map-note').innerText.includes('{NAME}')")
        page.wait_for_selector("#latent-map .lm-root[data-points]")
        page.screenshot(path=str(artifacts / "gan-latent-map.png"), full_page=True)

        page.get_by_role("tab", name="Sample", exact=True).click()
        page.wait_for_selector("#sample-grid img")  # the first grid, of the default model
        before = _src(page, "#sample-grid img")
        choose(page, "sample-checkpoint")
        page.locator("#sample-go").click()
        _wait_new_src(page, "#sample-grid img", before)
        page.get_by_role("tab", name="Interpolate").click()
        page.locator("#int-go").click()
        page.wait_for_selector("#int-lerp img")
        page.get_by_role("tab", name="Traverse").click()
        page.locator("#trv-go").click()
        page.wait_for_selector("#trv-grid img")
        page.screenshot(path=str(artifacts / "gan-sample.png"), full_page=True)
        assert not page.errors
