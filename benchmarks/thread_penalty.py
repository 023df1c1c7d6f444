"""Why training in the app's thread runs slower than the CLI: libgomp's oversubscription throttle.

The app trains in a background thread of the server's process, where other threads (the main thread after loading
the models, the handlers' worker threads) have OpenMP teams of their own. Once libgomp manages more threads than
there are cores, its idle workers stop spinning and sleep at once, so every parallel region (every elementwise op
above ATen's grain size, every matrix product) first wakes them through the kernel. Measured here, each in a fresh
process: the Train tab's model trained in a thread alone, and in a thread after one matrix product on the main
thread; and one small elementwise op (128 x 512) in each case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, tempfile, threading, time
os.environ["VAEDEMO_CHECKPOINT_DIR"] = tempfile.mkdtemp()
import torch
from pathlib import Path
from vaedemo.runs import RunSpec, run
from vaedemo.training import TrainConfig

epochs, other = int(sys.argv[1]), sys.argv[2] == "other"
if other:  # what the server's main thread has done before any run starts
    a = torch.randn(1000, 1000)
    (a @ a).sum()
out = {}

def work():
    x = torch.randn(128, 512)
    for _ in range(200):
        torch.relu(x + 1.0)
    t = time.perf_counter()
    for _ in range(3000):
        torch.relu(x + 1.0)
    out["op_us"] = (time.perf_counter() - t) / 3000 * 1e6
    run(RunSpec(name="t", model="vae", latent_dim=2, train=TrainConfig(epochs=epochs, batch_size=128, lr=1e-3)))
    history = json.loads((Path(os.environ["VAEDEMO_CHECKPOINT_DIR"]) / "t" / "config.json").read_text())["history"]
    rates = sorted(e["samples_per_s"] for e in history[1:] or history)
    out["samples_per_s"] = rates[len(rates) // 2]

thread = threading.Thread(target=work)
thread.start()
thread.join()
print(json.dumps(out))
"""


def _child(epochs: int, other: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(epochs), "other" if other else "alone"], check=True,
                          capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    epochs = 2 if quick else 4
    alone, other = _child(epochs, False), _child(epochs, True)
    return {"epochs": epochs, "alone": alone, "after_main": other,
            "ratio": other["samples_per_s"] / alone["samples_per_s"]}


def render(r: dict) -> str:
    return (
        f"Why runs started in the app train in a worker process: the same training in a thread of a fresh process "
        f"ran at {r['alone']['samples_per_s']:,.0f} samples/s "
        f"alone and at {r['after_main']['samples_per_s']:,.0f} ({r['ratio']:.0%}) once the main thread had run one "
        "matrix product (the server now builds its page in a thread of its own for this reason); one small "
        f"elementwise op took {r['alone']['op_us']:.0f} against "
        f"{r['after_main']['op_us']:.0f} µs. A second OpenMP team puts libgomp over the core count, and its workers "
        "then sleep between parallel regions instead of spinning (see benchmarks/thread_penalty.py). The handlers' "
        "worker threads keep their teams while they live, and the training thread waits for the GIL about 15% of "
        "the time (py-spy). A worker process has neither. It trains on the server's threads less one, which the server "
        "and the visitor's browser keep; on 2 cores that is one thread against the CLI's two, which is what is left "
        "of the gap."
    )
