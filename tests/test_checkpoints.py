"""Checkpoints: safe names, atomic saves, no unpickling, broken ones listed with a reason."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import vaedemo
from vaedemo.checkpoints import inspect_checkpoint, resolve, save_checkpoint, scan_checkpoints
from vaedemo.models import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ckdir(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("kind", ["ae", "vae", "conv-vae", "cvae"])
def test_save_load_round_trip_gives_identical_outputs(ckdir, kind):
    torch.manual_seed(0)
    model = build_model(kind, latent_dim=3).eval()
    save_checkpoint(model, f"rt-{kind}", meta={"metrics": {"x": 1.0}})
    loaded = vaedemo.load_model(f"rt-{kind}")
    assert loaded.kind == kind and loaded.latent_dim == 3 and not loaded.training
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.equal(model.encode(x, y)[0], loaded.encode(x, y)[0])
        assert torch.equal(model.decode(torch.ones(4, 3), y), loaded.decode(torch.ones(4, 3), y))
    config = json.loads((ckdir / f"rt-{kind}" / "config.json").read_text())
    assert config["model"]["kind"] == kind and config["format_version"] == 1 and "created" in config
    assert vaedemo.list_checkpoints() == [f"rt-{kind}"]


@pytest.mark.parametrize(
    "name", ["../app", "..", "/etc/passwd", "a/b", "x\x00y", "A" * 10_000, "", "Upper", ".hidden", "a..b"]
)
def test_hostile_names_are_refused(ckdir, name):
    with pytest.raises(ValueError):
        vaedemo.load_model(name)
    with pytest.raises(ValueError):
        save_checkpoint(build_model("ae"), name)
    assert not (ckdir.parent / "app").exists()


def test_name_resolving_outside_folder_is_refused_even_via_symlink(ckdir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    save_checkpoint(build_model("ae"), "real", root=outside)
    (ckdir / "link").symlink_to(outside / "real")
    with pytest.raises(ValueError, match="outside"):
        resolve("link")
    assert "link" not in vaedemo.list_checkpoints()


def test_existing_checkpoint_is_not_overwritten_by_accident(ckdir):
    save_checkpoint(build_model("ae"), "mine")
    with pytest.raises(ValueError, match="already exists"):
        save_checkpoint(build_model("ae"), "mine")
    save_checkpoint(build_model("ae", latent_dim=2), "mine", overwrite=True)
    assert vaedemo.load_model("mine").latent_dim == 2


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {BOOM_MARK}",))


BOOM_MARK = "/tmp/vaedemo-pickle-executed"


@pytest.mark.parametrize("filename", ["model.pt", "model.safetensors"])
def test_planted_pickle_is_never_executed(ckdir, filename):
    Path(BOOM_MARK).unlink(missing_ok=True)
    folder = ckdir / "evil"
    save_checkpoint(build_model("ae"), "evil")
    (folder / filename).write_bytes(pickle.dumps(Boom()))
    infos = {i.name: i for i in scan_checkpoints()}
    if filename == "model.safetensors":
        assert not infos["evil"].ok and "safetensors" in infos["evil"].reason
        with pytest.raises(ValueError, match="cannot be loaded"):
            vaedemo.load_model("evil")
    else:
        vaedemo.load_model("evil")  # loads the real weights; model.pt is ignored
    assert not Path(BOOM_MARK).exists()


def _plant(folder: Path, how: str):
    weights = folder / "model.safetensors"
    if how == "empty":
        weights.write_bytes(b"")
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "wrong-shape":
        from safetensors.torch import save_file

        save_file(build_model("ae", latent_dim=9).state_dict(), weights)
    elif how == "nan":
        from safetensors.torch import save_file

        sd = build_model("ae").state_dict()
        sd["encoder.encoder_lin.0.weight"][0, 0] = float("nan")
        save_file(sd, weights)
    elif how == "bad-json":
        (folder / "config.json").write_text("{not json")
    elif how == "no-config":
        (folder / "config.json").unlink()


@pytest.mark.parametrize(
    "how,reason",
    [
        ("empty", "empty"),
        ("truncated", "safetensors"),
        ("wrong-shape", "shape"),
        ("nan", "NaN"),
        ("bad-json", "JSON"),
        ("no-config", "missing"),
    ],
)
def test_broken_checkpoint_is_listed_with_reason_and_others_still_load(ckdir, how, reason):
    save_checkpoint(build_model("ae"), "good")
    save_checkpoint(build_model("ae"), "bad")
    _plant(ckdir / "bad", how)
    infos = {i.name: i for i in scan_checkpoints()}
    assert infos["good"].ok
    assert not infos["bad"].ok and reason in infos["bad"].reason
    assert vaedemo.list_checkpoints() == ["good"]
    vaedemo.load_model("good")


SAVER = textwrap.dedent(
    """
    import sys, os, time
    sys.path.insert(0, {root!r})
    import vaedemo.checkpoints as ck
    from vaedemo.models import build_model
    real = ck._write_synced
    def slow(path, data):
        real(path, data)
        print("wrote", path.name, flush=True)
        time.sleep(30)  # be killed here, mid-save
    ck._write_synced = slow
    ck.save_checkpoint(build_model("ae", latent_dim=9), "victim", overwrite=True)
    """
)


def test_kill_9_mid_save_leaves_the_old_checkpoint_intact(ckdir):
    save_checkpoint(build_model("ae", latent_dim=3), "victim")
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(ckdir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER.format(root=str(ROOT))], env=env, stdout=subprocess.PIPE, text=True
    )
    assert "wrote" in proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert vaedemo.list_checkpoints() == ["victim"]
    assert vaedemo.load_model("victim").latent_dim == 3  # the old one, whole
    assert inspect_checkpoint(ckdir / "victim").ok


def test_interrupted_swap_is_recovered(ckdir):
    save_checkpoint(build_model("ae", latent_dim=3), "swap")
    os.replace(ckdir / "swap", ckdir / ".trash-swap-0123abcd")  # killed between the two renames
    assert vaedemo.list_checkpoints() == ["swap"]
    assert vaedemo.load_model("swap").latent_dim == 3


def test_load_by_explicit_path(ckdir, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    save_checkpoint(build_model("vae", latent_dim=2), "p", root=other)
    assert vaedemo.load_model(other / "p").latent_dim == 2
    with pytest.raises(ValueError, match="no checkpoint named"):
        vaedemo.load_model("p")
