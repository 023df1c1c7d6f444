"""Handler tests for the vaedemo.ui tabs: called directly, without a server, on the tiny checkpoints.

Handlers return ``{output name: value}``; names left out keep what the page shows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("app_env")


def no_progress(*args, **kwargs):
    return None


@pytest.fixture(scope="module")
def ui(app_env):
    """The UI's modules by tab: ui.rec, ui.map, ui.smp, ui.train, plus shared helpers, the app and the server."""
    from types import SimpleNamespace

    from vaedemo import jobs
    from vaedemo.ui import app, components, latent_map, reconstruct, sample, server, shared, train

    return SimpleNamespace(
        rec=reconstruct,
        map=latent_map,
        smp=sample,
        train=train,
        shared=shared,
        comp=components,
        app=app,
        server=server,
        jobs=jobs,
    )


def _value(update):
    return update["value"] if isinstance(update, dict) else update


def _visible(update):
    return update.get("visible") if isinstance(update, dict) else None


def _sketch(strokes: bool) -> dict:
    """What gr.Sketchpad(type='numpy', image_mode='RGBA') sends: black strokes on a clear canvas."""
    canvas = np.zeros((280, 280, 4), np.uint8)
    if strokes:
        canvas[60:220, 130:150] = (0, 0, 0, 255)  # a "1"
    return {"background": None, "layers": [canvas], "composite": canvas}


# ---------------------------------------------------------------------------------- Reconstruct


def test_reconstruct_shows_crisp_pngs_scores_and_comparison(ui, digit_png):
    out = ui.rec.reconstruct(str(digit_png), "tiny-vae", "tiny-ae")
    assert set(out) == {
        "panel",
        "scores",
        "code",
        "neighbours",
        "here",
    }
    panel = out["panel"]
    scores, code, neighbours, here = out["scores"], out["code"], out["neighbours"], out["here"]
    # one picture: input, reconstruction, the compared model's reconstruction and the error map, captioned
    size = 28 * ui.shared.DIGIT_SCALE
    assert isinstance(panel, Image.Image) and panel.width >= 4 * size and panel.height > size
    tiles = np.asarray(panel.convert("L"))[:size]
    gap = (panel.width - 4 * size) // 3
    tile = [tiles[:, k * (size + gap): k * (size + gap) + size] for k in range(4)]
    assert np.array_equal(tile[0][::8, ::8], np.round(here * 255).astype(np.uint8))  # the input the model got
    block = tile[1][:8, :8]  # nearest-neighbour enlargement: every 8×8 block is one flat colour
    assert (block == block[0, 0]).all()
    assert not np.array_equal(tile[1], tile[2])  # the two models rebuild the digit differently
    strip = np.asarray(panel.convert("L"))[size + 40:]  # under the tiles: the VAE's other decodes of z ~ q(z|x)
    assert strip.shape[0] >= 84 and (strip < 128).any() and (strip > 128).any()
    # one table, a column per model: the VAE has a -ELBO, the AE does not
    assert "| Score | This model | Compared with |" in scores
    assert "How typical" in scores and "an AE has no probability model" in scores
    assert "**tiny-vae**" in scores and "**tiny-ae**" in scores
    assert len(code.data) == 1 and len(code.data[0].y) == 2  # latent 2: two bars with ±σ
    assert neighbours.count('class="vd-thumb"') == 5 and neighbours.count("·") == 5
    assert here.shape == (28, 28) and here.dtype == np.float32


def test_reconstruct_with_an_ae_hides_the_samples(ui, digit_png):
    out = ui.rec.reconstruct(str(digit_png), "tiny-ae")
    size = 28 * ui.shared.DIGIT_SCALE
    assert out["panel"].width < 4 * size and out["panel"].height < size + 84  # three tiles; no decodes of q(z|x)
    assert "This model |" in out["scores"] and "Compared with" not in out["scores"]


def test_reconstruct_a_cvae_names_the_label_it_used(ui, digit_png):
    scores = ui.rec.reconstruct(str(digit_png), "tiny-cvae")["scores"]
    assert "Label given to the CVAE" in scores


def test_sketch_strokes_are_reconstructed_and_a_blank_canvas_is_ignored(ui):
    out = ui.rec.reconstruct_sketch(_sketch(True), "tiny-vae", "")
    assert isinstance(out["panel"], Image.Image)
    assert out["here"][:, 12:16].sum() > out["here"][:, :6].sum()  # the stroke is a centred vertical bar
    blank = ui.rec.reconstruct_sketch(_sketch(False), "tiny-vae", "")
    assert blank == {}  # nothing changes on the page


def test_the_page_gets_the_reconstruction_first_and_then_the_rest(ui, digit_png):
    """The tab's events answer in two steps, so the picture is drawn before the code's plot is laid out;
    the last step holds every output (what a gradio_client caller gets), computed once."""
    steps = list(ui.rec.staged(ui.rec.reconstruct)(str(digit_png), "tiny-vae", ""))
    assert [set(s) for s in steps] == [{"panel", "scores", "here"}, {"panel", "scores", "here", "code", "neighbours"}]
    assert steps[0]["panel"] is steps[1]["panel"]
    opened = list(ui.rec.staged(ui.rec.reconstruct_again)(None, "tiny-ae", ""))  # no "here" before a digit
    assert set(opened[0]) == {"panel", "scores"} and "code" in opened[-1]
    assert list(ui.rec.staged(ui.rec.reconstruct_sketch)(_sketch(False), "tiny-vae", "")) == [{}]


def test_examples_and_model_switch_reuse_the_last_input(ui):
    out = ui.rec.reconstruct_example("tiny-vae", "", gr.SelectData(None, {"index": 3, "value": None}))
    here = out["here"]
    assert here.shape == (28, 28)
    again = ui.rec.reconstruct_again(here, "tiny-ae", "")
    assert np.array_equal(again["here"], here)
    # before a digit of their own, switching models redoes the example the page opened with, still not "theirs"
    opened = ui.rec.reconstruct_again(None, "tiny-ae", "")
    assert "**tiny-ae**" in opened["scores"] and "here" not in opened
    assert ui.rec.reconstruct_again(here, "", "") == {}


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda ui, p: ui.rec.reconstruct(None, "tiny-vae"), "Upload an image"),
        (lambda ui, p: ui.rec.reconstruct(str(p), ""), "Choose a model"),
        (lambda ui, p: ui.rec.reconstruct(str(p), "../etc"), "not a valid checkpoint name"),
        (lambda ui, p: ui.rec.reconstruct(str(p), "x" * 10_000), "at most 64"),
        (lambda ui, p: ui.rec.reconstruct(str(p), "nope\x00"), "NUL"),
        (lambda ui, p: ui.rec.reconstruct(str(p), "no-such-model"), "no-such-model"),
        (lambda ui, p: ui.smp.sample("tiny-vae", float("nan"), 1.0, 0, "any"), "number of samples"),
        (lambda ui, p: ui.smp.sample("tiny-vae", 4, float("inf"), 0, "any"), "temperature"),
        (lambda ui, p: ui.smp.sample("tiny-vae", 4, 1.0, -1, "any"), "seed"),
        (lambda ui, p: ui.smp.sample("tiny-vae", 10**9, 1.0, 0, "any"), "number of samples"),
        (lambda ui, p: ui.smp.sample("tiny-cvae", 4, 1.0, 0, "11"), "digit"),
        (lambda ui, p: ui.smp.interpolate("tiny-vae", None, None, 1, 2, float("nan")), "steps"),
        (lambda ui, p: ui.smp.interpolate("tiny-vae", None, None, 1, None, 5), "end"),
        (lambda ui, p: ui.smp.interpolate("tiny-vae", None, None, -5, 2, 5), "start"),
        (lambda ui, p: ui.smp.traverse("tiny-vae", None, 0, [7], 5, 3.0), "latent dimension"),
        (lambda ui, p: ui.smp.traverse("tiny-vae", None, 0, None, 5, math.inf), "span"),
        (lambda ui, p: ui.map.latent_map("tiny-vae", "isomap", 500, None, no_progress), "method"),
        (lambda ui, p: ui.map.latent_map("tiny-vae", "pca", float("nan"), None, no_progress), "number of digits"),
    ],
)
def test_bad_inputs_become_clear_gr_errors(ui, digit_png, call, words):
    with pytest.raises(gr.Error) as info:
        call(ui, digit_png)
    assert words.lower() in str(info.value.message).lower()
    assert "Traceback" not in str(info.value.message)


def test_bad_files_become_clear_gr_errors(ui, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"these bytes are not a picture")
    with pytest.raises(gr.Error, match="not an image we can read"):
        ui.rec.reconstruct(str(junk), "tiny-vae")
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    with pytest.raises(gr.Error, match="blank"):
        ui.rec.reconstruct(str(blank), "tiny-vae")


def test_unexpected_failures_do_not_leak_internals(ui, digit_png, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail /srv/path")

    monkeypatch.setattr(ui.rec.inference, "reconstruct", boom)
    with pytest.raises(gr.Error) as info:
        ui.rec.reconstruct(str(digit_png), "tiny-vae")
    assert "Something went wrong" in info.value.message and "secret" not in info.value.message


def test_digit_image_hands_the_path_through_and_reads_data_urls(ui, digit_png):
    import base64

    from gradio.data_classes import ImageData

    comp = ui.comp.DigitImage(type="filepath", render=False)
    assert comp.get_block_name() == "image"
    assert comp.preprocess(ImageData(path=str(digit_png))) == str(digit_png)
    raw = digit_png.read_bytes()
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    assert comp.preprocess(ImageData(url=url)) == raw
    assert comp.preprocess(None) is None


def test_error_map_is_red_for_extra_ink_and_blue_for_missing_ink(ui):
    err = np.zeros((28, 28), np.float32)
    err[0, 0], err[0, 1] = 1.0, -1.0
    rgb = np.asarray(ui.shared.error_image(err, scale=1))
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (0, 0, 255)
    assert tuple(rgb[5, 5]) == (255, 255, 255)


# ---------------------------------------------------------------------------------- Latent map


def test_latent_map_payload_has_points_star_and_manifold(ui):
    here = ui.rec.inference.digit_input(7)
    shown = ui.map.latent_map("tiny-vae", "pca", 500, here, no_progress)
    payload, manifold, note, key = shown["map"], shown["manifold"], shown["note"], shown["key"]
    data = json.loads(payload)
    assert len(data["x"]) == len(data["y"]) == len(data["label"]) == len(data["index"]) == 500
    assert data["here"] is not None and len(data["here"]) == 2
    assert data["sprite"]["url"].endswith("digits.png") and data["axis"] == ["PC 1", "PC 2"]
    assert _visible(manifold) is True and _value(manifold).size == (15 * 28, 15 * 28)
    assert "tiny-vae" in note and "star marks the digit you gave" in note
    assert key == {"checkpoint": "tiny-vae", "method": "pca", "n": 500, "here": ui.map.here_key(here)}

    manifold_ae = ui.map.latent_map("tiny-ae", "pca", 500, None, no_progress)["manifold"]
    assert _visible(manifold_ae) is False  # an AE with latent 4 has no plane to tile


def test_the_first_tsne_reports_progress_and_the_second_is_cached(ui):
    calls = []

    def progress(fraction, desc=None):
        calls.append((fraction, desc))

    shown = ui.map.latent_map("tiny-cvae", "tsne", 300, None, progress)
    assert shown["key"]["method"] == "tsne" and len(json.loads(shown["map"])["x"]) == 300
    assert any("t-SNE" in (desc or "") for _, desc in calls) and calls[-1][0] == 1.0
    calls.clear()
    ui.map.latent_map("tiny-cvae", "tsne", 300, None, progress)
    assert calls == []  # cached per checkpoint: a second visit computes nothing
    ui.map.latent_map("tiny-cvae", "tsne", 1000, None, progress)
    assert calls == []  # and another size is cut from the same full map, on the same axes


def test_latent_map_auto_skips_when_the_map_is_up_to_date(ui):
    first = ui.map.latent_map_auto("tiny-vae", "pca", 500, None, None, no_progress)
    key = first["key"]
    again = ui.map.latent_map_auto("tiny-vae", "pca", 500, None, key, no_progress)
    assert again == {}


def test_clicks_on_the_map_show_a_digit_or_decode_a_place(ui):
    key = ui.map.latent_map("tiny-vae", "pca", 500, None, no_progress)["key"]
    point = ui.map.map_point(key, gr.EventData(None, {"index": 42, "label": 0, "x": 0, "y": 0}))
    assert _value(point["original"]).size == _value(point["recon"]).size == (168, 168)
    assert "#42" in point["picked"]
    space = ui.map.map_space(key, gr.EventData(None, {"x": 0.0, "y": 0.0}))
    assert _value(space["decoded"]).size == (168, 168) and "Decoded the place" in space["picked"]
    far_text = ui.map.map_space(key, gr.EventData(None, {"x": 1e6, "y": -1e6}))["picked"]
    assert "Far from the data" in far_text
    with pytest.raises(gr.Error):
        ui.map.map_point(key, gr.EventData(None, {"index": "1e9"}))
    with pytest.raises(gr.Error):
        ui.map.map_space(key, gr.EventData(None, {"x": "nan", "y": 0}))
    with pytest.raises(gr.Error, match="Draw the map first"):
        ui.map.map_point(None, gr.EventData(None, {"index": 1}))


# ---------------------------------------------------------------------------------- Sample


def test_sample_is_reproducible_and_offers_a_png(ui):
    shown = ui.smp.sample("tiny-vae", 16, 1.0, 5, "any")
    again = ui.smp.sample("tiny-vae", 16, 1.0, 5, "any")
    assert np.array_equal(np.asarray(shown["grid"]), np.asarray(again["grid"]))
    path = Path(_value(shown["file"]))
    assert path.suffix == ".png" and Image.open(path).format == "PNG"
    assert "N(0" in shown["note"]
    ae_note = ui.smp.sample("tiny-ae", 4, 1.0, 0, "any")["note"]
    assert "Gaussian fitted" in ae_note


def test_sample_grid_shows_what_the_classifier_reads(ui):
    shown = ui.smp.sample("tiny-vae", 16, 1.0, 5, "any")
    grid, download, note = shown["grid"], shown["file"], shown["note"]
    assert "reads" in note and "of 16 as clear digits" in note
    pixels = np.asarray(grid.convert("RGB")).astype(int)
    coloured = (np.abs(pixels[..., 0] - pixels[..., 1]) > 40).sum()  # green or amber label text; digits are grey
    assert grid.mode == "RGB" and coloured > 16 * 10
    clean = Image.open(_value(download))
    assert clean.mode == "L"  # the downloaded grid carries no labels


def test_sample_controls_follow_the_model(ui):
    shown = ui.smp.sample_controls("tiny-cvae")
    digit, dims = shown["digit"], shown["dims"]
    assert _visible(digit) is True
    assert len(dims["choices"]) == 16 and len(dims["value"]) == 5
    shown = ui.smp.sample_controls("tiny-vae")
    digit, dims = shown["digit"], shown["dims"]
    assert _visible(digit) is False and len(dims["choices"]) == 2
    assert "nats" in dims["choices"][0][0]


def test_interpolate_gives_two_paths_a_norm_plot_and_a_gif(ui, digit_png):
    shown = ui.smp.interpolate("tiny-vae", str(digit_png), None, 0, 9, 6)
    lerp, slerp, norms, gif = shown["lerp"], shown["slerp"], shown["norms"], shown["gif"]
    assert lerp.size == slerp.size and lerp.width > 5 * lerp.height
    assert [t.name for t in norms.data] == ["linear (lerp)", "spherical (slerp)"]
    assert Image.open(_value(gif)).format == "GIF"


def test_traverse_gives_a_grid_and_a_gif(ui):
    shown = ui.smp.traverse("tiny-cvae", None, 3, ["0", 2], 5, 2.0)
    grid, gif, text = shown["grid"], shown["gif"], shown["text"]
    assert grid.height < grid.width and "z0, z2" in text
    assert Image.open(_value(gif)).is_animated


def test_projector_export_writes_tsv_and_sprite(ui):
    files = ui.smp.export_projector("tiny-ae", 100, no_progress)
    names = sorted(Path(f).name for f in files)
    assert names == ["metadata.tsv", "projector-tiny-ae.zip", "projector_config.json", "sprite.png", "tensors.tsv"]
    tensors = Path(next(f for f in files if f.endswith("tensors.tsv"))).read_text().splitlines()
    assert len(tensors) == 100 and len(tensors[0].split("\t")) == 4


# ---------------------------------------------------------------------------------- lists, training, health


def test_model_lists_pick_up_a_new_checkpoint(ui):
    from vaedemo.checkpoints import save_checkpoint
    from vaedemo.models import build_model

    save_checkpoint(build_model("ae", latent_dim=2), "fresh-ae")
    update = ui.shared.refresh_checkpoint("tiny-vae")
    assert "fresh-ae" in [name for _, name in update["choices"]] and update["value"] == "tiny-vae"
    update = ui.shared.refresh_checkpoint("deleted-model")
    labels = dict((name, label) for label, name in update["choices"])
    assert "· VAE ·" in labels[update["value"]]  # falls back to a VAE (other tests may have trained more)
    compare = ui.shared.refresh_compare("gone")
    assert compare["value"] == "" and compare["choices"][0] == ui.shared.NONE_CHOICE


def test_an_empty_checkpoint_folder_gives_a_working_page(ui, monkeypatch, tmp_path, digit_png):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    ui.app.build_demo()
    loaded = ui.app.page_view()
    assert loaded["list_rec"]["choices"] == [] and "No trained models yet" in loaded["scores"]
    assert "No models yet" in ui.map.latent_map_auto(None, "pca", 500, None, None, no_progress)["note"]
    assert ui.smp.sample_first_visit(None, 4, 1.0, 0, "any", None) == {}
    with pytest.raises(gr.Error, match="Choose a model"):
        ui.rec.reconstruct(str(digit_png), None)


def test_progress_line_shows_epoch_eta_and_speed(ui):
    u = ui.jobs.TrainUpdate("j", fraction=0.5, epoch=2, epochs=4, samples_per_s=1234.0, eta_s=75)
    html = ui.train.progress_html(u)
    assert "width:50.0%" in html and "Epoch 2 of 4" in html and "1 min 15 s left" in html and "1,234 samples/s" in html


def test_training_off_removes_the_tab_controls_and_the_api(ui, monkeypatch):
    monkeypatch.setenv("VAEDEMO_TRAINING", "off")
    demo = ui.app.build_demo()
    names = [d.get("api_name") for d in demo.config["dependencies"]]
    assert "train" not in names and "reconstruct" in names and "health" in names
    texts = [b.get("props", {}).get("value") for b in demo.config["components"]]
    assert any(isinstance(t, str) and "Training is turned off" in t for t in texts)
    with pytest.raises(gr.Error, match="turned off"):
        next(ui.train.train("vae", "mnist-10k", 2, 1.0, 1, 64, 0.001, "x"))


def test_training_on_a_space_is_off_by_default(ui, monkeypatch):
    monkeypatch.delenv("VAEDEMO_TRAINING", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/vaedemo")
    names = [d.get("api_name") for d in ui.app.build_demo().config["dependencies"]]
    assert "train" not in names


def test_busy_trainer_is_reported(ui, monkeypatch):
    monkeypatch.setattr(
        ui.jobs.TRAINER, "status", lambda: {"busy": True, "name": "other-run", "fraction": 0.4, "eta_s": 30.0}
    )
    status = ui.train.train_status()
    assert "Busy" in status and "other-run" in status and "30 s" in status


def test_health_is_cheap_and_complete(ui):
    from vaedemo.ui import health

    h = health()
    assert {"version", "device", "loaded_checkpoints", "training_enabled"} <= set(h)


def test_server_address_honours_the_environment(ui, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert ui.server.server_address() == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8000")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert ui.server.server_address() == ("0.0.0.0", 8000)
    monkeypatch.setenv("PORT", "9000")
    assert ui.server.server_address() == ("0.0.0.0", 9000)
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit, match="port must be a number"):
        ui.server.server_address()


def test_the_ui_layer_does_not_import_torch():
    sources = sorted((Path(__file__).resolve().parents[1] / "vaedemo" / "ui").glob("*.py"))
    assert len(sources) >= 6
    for path in sources:
        source = path.read_text()
        assert "import torch" not in source and "from torch" not in source, path.name


def test_the_train_tab_offers_the_precision(ui, monkeypatch):
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    demo = ui.app.build_demo()
    train = next(d for d in demo.config["dependencies"] if d.get("api_name") == "train")
    dropdowns = {c["id"]: c for c in demo.config["components"]}
    precision = [
        dropdowns[i] for i in train["inputs"] if dropdowns[i].get("props", {}).get("elem_id") == "train-precision"
    ]
    assert precision and [v for _, v in precision[0]["props"]["choices"]] == ["auto", "fp32", "bf16"]


def test_about_puts_the_models_side_by_side_with_the_sentence_the_numbers_support(ui):
    from vaedemo.ui import about

    rows = [
        {
            "name": "vae-x",
            "kind": "vae",
            "label": "VAE",
            "neg_elbo": 93.0,
            "confident_share": 0.73,
            "class_entropy": 2.29,
            "frechet_distance": 20.0,
            "precision": 0.7,
            "recall": 0.8,
        },
        {
            "name": "gan-x",
            "kind": "gan",
            "label": "GAN",
            "neg_elbo": None,
            "confident_share": 0.93,
            "class_entropy": 2.27,
            "frechet_distance": 8.0,
            "precision": 0.9,
            "recall": 0.6,
        },
    ]
    table = about.yardstick_table(rows)
    assert "| `gan-x` | GAN | — (no p(x))" in table and "| `vae-x` | VAE | 93.0 |" in table
    assert "an FID for MNIST" in table and "closer to real digits than the best VAE's" in table
    assert "lower recall (0.60 against 0.80)" in table
    rows[1]["frechet_distance"] = 30.0
    rows[1]["confident_share"] = 0.5
    assert "matches or beats `gan-x`" in about.yardstick_table(rows)
    assert about.yardstick_table([rows[0]]).count("What the numbers say") == 0  # no GAN: no comparison
    en, ko = about.read_static("about_gan_en.md"), about.read_static("about_gan_ko.md")
    assert "discriminator** (판별자)" in en and "generator** (생성자)" in en
    assert all(word in ko for word in ("판별자", "생성자", "명시적", "암시적"))


def test_the_train_tab_redraws_the_map_only_when_new_previews_come(ui):
    """Each figure drawn while a run trains takes time from it: the same previews are not sent twice, the
    curve comes with its first points and with every epoch's validation point, and the run's last update
    carries the curve, the previews and the map again for an API client that reads only that one."""
    import numpy as np

    J = ui.jobs
    coords, labels = np.zeros((10, 2), np.float32), np.arange(10)
    first = J.TrainUpdate("j", seq=1, steps=[(0.1, 200.0)])
    mid = J.TrainUpdate("j", seq=2, steps=[(0.1, 200.0), (0.2, 190.0)])
    epoch = J.TrainUpdate("j", seq=3, steps=mid.steps, history=[{"epoch": 1, "val_loss": 180.0}], epoch=1,
                          map_coords=coords, map_labels=labels, previews_seq=3)
    later = J.TrainUpdate("j", seq=4, steps=[*mid.steps, (1.1, 170.0)], history=epoch.history, epoch=1,
                          map_coords=coords, map_labels=labels, previews_seq=3, message="Epoch 2 of 2")
    done = J.TrainUpdate("j", seq=5, steps=later.steps, history=epoch.history, epoch=1, map_coords=coords,
                         map_labels=labels, previews_seq=3, done=True, checkpoint="x", message="Finished")
    views = [view for _, view in ui.train.changed_views(iter([first, mid, epoch, later, done]), curve_every_s=3600)]
    assert ["loss" in v for v in views] == [True, False, True, False, True]
    assert ["live" in v for v in views] == [False, False, True, False, True]
    assert {trace.type for trace in views[2]["live"].data} == {"scatter"}  # SVG: no new GL context per redraw
    assert all("progress" in v and "status" in v for v in views) and "Done" in views[-1]["status"]


def test_the_page_is_built_off_the_main_thread_and_its_errors_still_reach_the_caller():
    """Building the page loads models; on the main thread that would leave an OpenMP team there for good, which
    slows training in a thread (benchmarks/thread_penalty.py measures it)."""
    import threading

    from vaedemo.ui.server import off_the_main_thread

    assert off_the_main_thread(lambda: threading.current_thread()) is not threading.main_thread()

    def broken():
        raise ValueError("no such checkpoint")

    with pytest.raises(ValueError, match="no such checkpoint"):
        off_the_main_thread(broken)
