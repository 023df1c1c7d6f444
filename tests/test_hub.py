"""Hugging Face Hub: push uploads the three files; hf:// loads from a pre-populated cache offline."""

import shutil

import pytest
import torch

import vaedemo
from vaedemo.checkpoints import save_checkpoint
from vaedemo.hub import push
from vaedemo.models import build_model


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path / "ck"))
    torch.manual_seed(0)
    model = build_model("vae", latent_dim=3).eval()
    folder = save_checkpoint(model, "hubby", extra_files={"README.md": b"# hubby\n", "optimizer.safetensors": b"x"})
    return model, folder


def test_hf_uri_loads_from_offline_cache(ckpt, tmp_path, monkeypatch):
    model, folder = ckpt
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--someone--hubby" / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("model.safetensors", "config.json", "README.md"):
        shutil.copy(folder / f, snap / f)
    (cache / "models--someone--hubby" / "refs").mkdir()
    (cache / "models--someone--hubby" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    loaded = vaedemo.load_model("hf://someone/hubby")
    z = torch.randn(2, 3)
    assert torch.equal(loaded.decode(z), model.decode(z))
    with pytest.raises(ValueError, match="not in the local Hub cache"):
        vaedemo.load_model("hf://someone/missing")
    with pytest.raises(ValueError, match="not a Hub model id"):
        vaedemo.load_model("hf://../../etc")


def test_push_uploads_weights_config_and_card_only(ckpt, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            calls["create"] = repo_id
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kw):
            calls["upload"] = kw

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    url = push("hubby", "someone/hubby")
    assert url.endswith("someone/hubby") and calls["create"] == "someone/hubby"
    assert sorted(calls["upload"]["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    assert calls["upload"]["folder_path"].endswith("hubby")


def test_checkpoints_and_hub_do_not_import_each_other():
    """hub builds on checkpoints; the hf:// branch of load_model lives in vaedemo.api, above both."""
    import ast
    from pathlib import Path

    import vaedemo.checkpoints

    tree = ast.parse(Path(vaedemo.checkpoints.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {"hub", "vaedemo.hub", "api", "vaedemo.api"} & imported
    assert not hasattr(vaedemo.checkpoints, "load_model")
    assert vaedemo.load_model.__module__ == "vaedemo.api"
