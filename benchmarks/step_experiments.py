"""The training-step variants tried for issue 17, timed side by side: ``python -m benchmarks.step_experiments``.

Each variant is one step as ``training.train`` runs it (batch 128), changed in one respect:

- ``engine``: what train() does (fused Adam; bf16 layers with float32 losses via ``networks_in``);
- ``adam-loop``: Adam's default single-tensor loop instead of the fused kernel (what train() used before);
- ``autocast-all``: autocast around the whole forward, losses included (the old ``--amp`` on CUDA);
- ``channels-last``: conv weights and activations in channels-last layout (conv models only);
- ``slices``: batches as slices of a per-epoch shuffled copy instead of gathered by index (copy included);
- ``compile``: ``torch.compile`` of the forward and loss (inductor, default mode; compile time reported apart;
  in bf16 under autocast around the whole forward, as ``autocast-all``).

Other processes share the cores, so each figure is the best of many short interleaved bursts;
``--threads 1 --cpu-clock`` times one thread's CPU time instead of the wall clock, which a busy
machine disturbs much less (the figures are then one core's, not the two-thread engine's).
``make bench`` runs them too (``run_for_bench``) and BENCHMARKS.md shows each against the engine.
"""

from __future__ import annotations

import argparse
import time

import torch

from vaedemo.data import mnist10k, to_unit_float
from vaedemo.models import build_model
from vaedemo.training import make_adam, networks_in

VARIANTS = ("engine", "adam-loop", "autocast-all", "channels-last", "slices", "compile")


# Dynamo does not trace networks_in's per-instance wrappers (the compiled graph had no bf16 op), so
# the compiled bf16 step puts autocast around the whole forward, as ``autocast-all`` does eagerly.
def _loss_fp32(model, xb):
    return model(xb, None, beta=model.beta).loss.total


def _loss_bf16(model, xb):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(xb, None, beta=model.beta).loss.total.float()


def make_step(kind: str, precision: str, variant: str, x: torch.Tensor, batch: int = 128):
    torch.manual_seed(0)
    model = build_model(kind).train()
    low = torch.bfloat16 if precision == "bf16" else None
    cl = variant == "channels-last"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if variant == "adam-loop":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = make_adam(model.parameters(), lr=1e-3)
    steps_per_epoch = len(x) // batch
    state = {"i": 0, "perm": None}

    def forward(xb):
        if variant == "autocast-all":
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low is not None):
                return model(xb, None, beta=model.beta).loss.total
        with networks_in(model, low, "cpu"):
            return model(xb, None, beta=model.beta).loss.total

    fwd = forward
    if variant == "compile":
        compiled = torch.compile(_loss_bf16 if low is not None else _loss_fp32)
        fwd = lambda xb: compiled(model, xb)  # noqa: E731

    def step():
        i = state["i"] % steps_per_epoch
        state["i"] += 1
        if variant == "slices":
            if i == 0:
                state["perm"] = x[torch.randperm(len(x))]
            xb = state["perm"][i * batch : (i + 1) * batch]
        else:
            xb = x[torch.randint(0, len(x), (batch,))]
        if cl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = fwd(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(kinds=("vae", "ae", "conv-vae"), precisions=("fp32", "bf16"), variants=VARIANTS, bursts: int = 12,
        burst_steps: int = 10, clock=time.perf_counter) -> dict:
    x = to_unit_float(mnist10k().x_train)
    steps, warm = {}, {}
    for kind in kinds:
        for p in precisions:
            for v in variants:
                if v == "channels-last" and kind == "vae":
                    continue
                if v == "autocast-all" and p == "fp32":
                    continue
                step = make_step(kind, p, v, x)
                start = time.perf_counter()
                for _ in range(3):
                    step()
                warm[(kind, p, v)] = time.perf_counter() - start
                steps[(kind, p, v)] = step
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(bursts):
        for key, step in steps.items():
            start = clock()
            for _ in range(burst_steps):
                step()
            best[key] = min(best[key], (clock() - start) / burst_steps)
    out = {}
    for (kind, p, v), seconds in best.items():
        base = best[(kind, p, "engine")]
        out[f"{kind}/{p}/{v}"] = {"ms_per_step": 1000 * seconds, "vs_engine": seconds / base,
                                  "first_3_steps_s": warm[(kind, p, v)]}
    return out


def run_for_bench(precisions, quick: bool = False) -> dict:
    """The variants as ``make bench`` times them; ``quick`` (the smoke test) times the VAE without compiling."""
    if quick:
        return run(("vae",), precisions, [v for v in VARIANTS if v != "compile"], bursts=1, burst_steps=2)
    return run(("vae", "ae", "conv-vae"), precisions, VARIANTS, bursts=8)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.step_experiments")
    ap.add_argument("--kinds", default="vae,ae,conv-vae")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--bursts", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--cpu-clock", action="store_true", help="time the main thread's CPU time (use with --threads 1)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.kinds.split(","), args.precisions.split(","), args.variants.split(","), bursts=args.bursts,
              clock=time.thread_time if args.cpu_clock else time.perf_counter)
    print(f"torch threads: {torch.get_num_threads()}, clock: {'thread CPU time' if args.cpu_clock else 'wall'}")
    print("| model / precision / variant | ms per step | ÷ engine | first 3 steps (s) |")
    print("| --- | --- | --- | --- |")
    for name, r in res.items():
        print(f"| {name} | {r['ms_per_step']:.2f} | {r['vs_engine']:.2f} | {r['first_3_steps_s']:.1f} |")


if __name__ == "__main__":
    main()
