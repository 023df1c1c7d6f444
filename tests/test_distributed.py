"""torchrun with 2 CPU processes (gloo) trains like one process; only rank 0 writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaedemo.checkpoints import LOCK_FILE  # the saves' lock file stays, by design

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--model", "vae", "--latent-dim", "8", "--epochs", "3", "--max-train", "2000",
        "--iwae-k", "0", "--device", "cpu", "--quiet"]


def _run(cmd, ckdir):
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(ckdir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_match_single_process_training(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    _run([*torchrun, "-m", "vaedemo", *ARGS, "--name", "ddp"], tmp_path)
    _run([sys.executable, "-m", "vaedemo", *ARGS, "--name", "single"], tmp_path)
    ddp = json.loads((tmp_path / "ddp" / "config.json").read_text())
    single = json.loads((tmp_path / "single" / "config.json").read_text())
    # Same effective batch (64 per rank × 2) and data, different shuffles: the same loss within 3%.
    a, b = ddp["metrics"]["validation"]["neg_elbo"], single["metrics"]["validation"]["neg_elbo"]
    assert abs(a - b) / b < 0.03, (a, b)
    assert [h["epoch"] for h in ddp["history"]] == [1, 2, 3]
    # Each rank trained on its half, and the history counts the samples of both.
    assert ddp["history"][0]["val_loss"] < 545  # learned something
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]
    assert leftovers == [] and sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_FILE) == ["ddp", "single"]
