"""Saves and scans from two real processes: an overwrite racing the app's scans never loses the new run.

Before the file lock and the exchange rename, a scan landing between a save's two renames moved the old
folder back, the save's second rename failed with ``OSError: [Errno 39] Directory not empty`` and the
fresh run was deleted.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vaedemo
from vaedemo.checkpoints import clean_stale, save_checkpoint, scan_checkpoints
from vaedemo.models import build_model

ROOT = Path(vaedemo.__file__).resolve().parents[1]  # the saver imports the same vaedemo as this test
SAVES = 100

SAVER = textwrap.dedent(
    """
    import json, sys, traceback
    sys.path.insert(0, {root!r})
    import vaedemo.checkpoints as ck
    from vaedemo.models import build_model
    if not {exchange!r}:
        ck._exchange = lambda a, b: False  # the two-rename path, as on a filesystem without RENAME_EXCHANGE
    model = build_model("vae", latent_dim=2, hidden_dim=8)
    ck.save_checkpoint(model, "race", meta={{"i": -1}}, overwrite=True)
    print("ready", flush=True)
    failures = []
    for i in range({saves}):
        try:
            ck.save_checkpoint(model, "race", meta={{"i": i}}, overwrite=True)
        except BaseException as e:
            failures.append(f"save {{i}}: {{type(e).__name__}}: {{e}}")
    print(json.dumps(failures), flush=True)
    """
)


@pytest.fixture
def ckdir(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange-rename", "two-renames"])
def test_overwrites_racing_scans_from_another_process_lose_nothing(ckdir, exchange):
    script = SAVER.format(root=str(ROOT), exchange=exchange, saves=SAVES)
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(ckdir)}
    saver = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert saver.stdout.readline().strip() == "ready", saver.stderr.read()
        scans = missing = 0
        deadline = time.monotonic() + 60
        while saver.poll() is None and time.monotonic() < deadline:
            names = [info.name for info in scan_checkpoints()]  # what every page load in the app does
            scans += 1
            missing += "race" not in names
        out, err = saver.communicate(timeout=30)
    finally:
        if saver.poll() is None:
            saver.kill()
            saver.wait()
    failures = json.loads(out.strip().splitlines()[-1]) if out.strip() else [err[-2000:]]
    assert failures == [], failures
    assert scans > SAVES  # the scans really raced the saves
    if exchange:
        assert missing == 0  # an exchange leaves the old or the new folder in place at every moment
    config = json.loads((ckdir / "race" / "config.json").read_text())
    assert config["i"] == SAVES - 1  # the last save's content
    assert vaedemo.list_checkpoints() == ["race"]
    assert sorted(p.name for p in ckdir.iterdir() if p.name != ".lock") == ["race"]  # no .tmp- or .trash- left


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_removes_a_killed_saves_folder_and_keeps_a_live_one(ckdir):
    save_checkpoint(build_model("vae", latent_dim=2, hidden_dim=8), "kept")
    dead = ckdir / f".tmp-kept@{_dead_pid()}-abc123"
    mine = ckdir / f".tmp-kept@{os.getpid()}-def456"  # this process's pid, but no save of its own writes it
    live_pid = os.getppid()  # pytest's parent (a shell, make): alive for the whole test
    live = ckdir / f".tmp-kept@{live_pid}-ghi789"
    legacy = ckdir / ".tmp-kept-jkl012"  # the older name without a pid: left to the one-hour rule
    for folder in (dead, mine, live, legacy):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    os.replace(ckdir / "kept", ckdir / ".trash-kept-0123abcd")  # killed between the two renames

    removed = clean_stale()

    assert sorted(removed) == sorted([dead, mine])
    assert live.is_dir() and legacy.is_dir()
    assert vaedemo.list_checkpoints() == ["kept"]  # the overwrite that was cut short is undone
    assert not list(ckdir.glob(".trash-*"))
    old = time.time() - 2 * 3600
    os.utime(legacy, (old, old))
    assert clean_stale() == [legacy]
    assert live.is_dir()


def test_a_failed_swap_is_a_sentence_and_keeps_the_old_checkpoint(ckdir, monkeypatch):
    import vaedemo.checkpoints as ck

    save_checkpoint(build_model("vae", latent_dim=2, hidden_dim=8), "solid", meta={"i": 0})

    def broken_exchange(a, b):
        raise OSError(39, "Directory not empty", str(b))

    monkeypatch.setattr(ck, "_exchange", broken_exchange)
    with pytest.raises(ValueError, match="could not be saved.*unchanged"):
        save_checkpoint(build_model("vae", latent_dim=2, hidden_dim=8), "solid", meta={"i": 1}, overwrite=True)
    assert json.loads((ckdir / "solid" / "config.json").read_text())["i"] == 0
    assert sorted(p.name for p in ckdir.iterdir() if p.name != ".lock") == ["solid"]
