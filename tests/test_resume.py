"""Runs survive crashes: every epoch's end is saved as a resumable partial run, and `kill -9` loses at most one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = [
    "--model",
    "vae",
    "--latent-dim",
    "2",
    "--hidden-dim",
    "16",
    "--max-train",
    "400",
    "--batch-size",
    "50",
    "--iwae-k",
    "0",
    "--precision",
    "fp32",
]


def _cli(ckdir: Path, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(ckdir), "VAEDEMO_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "vaedemo", *args]
    if kw.pop("background", False):
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kw)


def _epochs_saved(ckdir: Path, name: str) -> int:
    config = ckdir / ".partial" / name / "config.json"
    try:
        return int(json.loads(config.read_text())["training"]["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_continues_from_the_last_saved_epoch(tmp_path):
    proc = _cli(tmp_path, "train", *RUN, "--epochs", "400", "--name", "crashy", "--quiet", background=True)
    try:
        deadline = time.time() + 240
        while _epochs_saved(tmp_path, "crashy") < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no partial run was saved"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = _epochs_saved(tmp_path, "crashy")
    assert saved >= 3 and not (tmp_path / "crashy").exists()  # killed: no finished checkpoint, a partial run
    from vaedemo.runs import partial_runs

    os.environ["VAEDEMO_CHECKPOINT_DIR"], before = str(tmp_path), os.environ.get("VAEDEMO_CHECKPOINT_DIR")
    try:
        listed = {p.name: p for p in partial_runs()}
    finally:
        if before is None:
            os.environ.pop("VAEDEMO_CHECKPOINT_DIR")
        else:
            os.environ["VAEDEMO_CHECKPOINT_DIR"] = before
    assert listed["crashy"].epochs_done == saved and listed["crashy"].planned == 400
    # Continue it for its last epochs only: --epochs on resume is ignored for a partial run, so shorten
    # the plan in the saved file the way a long run would have run down (kept bounded in time here).
    config_path = tmp_path / ".partial" / "crashy" / "config.json"
    config = json.loads(config_path.read_text())
    config["planned_epochs"] = saved + 2
    config_path.write_text(json.dumps(config))
    done = _cli(tmp_path, "train", "--resume", "--name", "crashy", "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads((tmp_path / "crashy" / "config.json").read_text())
    assert final["training"]["epochs_done"] == saved + 2
    epochs = [h["epoch"] for h in final["history"]]
    assert epochs == list(range(1, saved + 3))  # the saved epochs, then the new ones: none lost, none twice
    assert not (tmp_path / ".partial" / "crashy").exists()  # finished: nothing left to continue
    assert "vaedemo train" in final["command"] and "--epochs 400" in final["command"]  # the run's own command


def test_the_app_offers_an_interrupted_run_and_continues_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("VAEDEMO_TRAINING", "on")
    from vaedemo import jobs, runs
    from vaedemo.training import TrainConfig

    calls = []

    def crash(p):  # the process "dies" after the second epoch was saved
        calls.append(p.epoch)
        if p.stats is not None and p.epoch == 2:
            raise KeyboardInterrupt

    spec = runs.RunSpec(
        name="cut-off",
        model="ae",
        latent_dim=2,
        max_train=200,
        iwae_k=0,
        command=runs.APP_COMMAND,
        train=TrainConfig(epochs=4, batch_size=50, precision="fp32"),
    )
    with pytest.raises(KeyboardInterrupt):
        runs.run(spec, progress=crash)
    assert [p.name for p in runs.partial_runs()] == ["cut-off"] and runs.partial_runs()[0].epochs_done == 2
    from vaedemo.ui.train import interrupted_runs, resume_controls

    assert interrupted_runs() == [("cut-off · ae · epoch 2 of 4", "cut-off")]
    assert resume_controls()["row"]["visible"] is True
    trainer = jobs.TrainingManager()
    updates = list(trainer.events(trainer.resume("cut-off")))
    last = updates[-1]
    assert last.done and last.error is None and last.checkpoint == "cut-off"
    assert [h["epoch"] for h in last.history] == [3, 4]  # only the epochs that were left
    final = json.loads((tmp_path / "cut-off" / "config.json").read_text())
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4] and final["command"] == runs.APP_COMMAND
    assert runs.partial_runs() == [] and resume_controls()["row"]["visible"] is False
    with pytest.raises(ValueError, match="no interrupted run"):
        trainer.resume("cut-off")
