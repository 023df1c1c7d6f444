"""Where a training step's time goes (torch.profiler), for each model and precision.

The step is the engine's hot loop (``training.train``): index a batch out of the float tensor,
forward with ``networks_in`` (bf16 layers, float32 losses), backward, fused Adam. Self CPU time of
every op is summed into a few groups; what the profiler does not see (Python between ops) is
the wall time left over. Shares are of the profiled step, whose ops the profiler itself slows
a little, so small ops weigh slightly more here than in the throughput figures.
"""

from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from vaedemo.data import mnist10k, to_unit_float
from vaedemo.models import build_model
from vaedemo.training import make_adam, networks_in

GROUPS = ("matrix products", "Adam", "copies and casts", "Bernoulli loss", "batch indexing", "other ops",
          "autograd and Python")
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::mkldnn_matmul",
              "aten::matmul", "aten::linear"}


def group_of(name: str) -> str:
    low = name.lower()
    if name in MATMUL_OPS or "conv" in low:
        return "matrix products"
    if "adam" in low:
        return "Adam"
    if name in ("aten::copy_", "aten::_to_copy", "aten::to", "aten::empty_strided", "aten::clone"):
        return "copies and casts"
    if "log_sigmoid" in low or "binary_cross_entropy" in low or "bernoullinll" in low:
        return "Bernoulli loss"
    if name in ("aten::index", "aten::index_select"):
        return "batch indexing"
    if name.startswith("aten::"):
        return "other ops"
    return "autograd and Python"


def _inside_loss(event) -> bool:
    """Whether the event is the loss's op or runs inside it: distributions._BernoulliNLL computes the loss with
    plain ops (exp, log, sigmoid), which group_of alone would count as other ops."""
    while event is not None:
        if group_of(event.name) == "Bernoulli loss":
            return True
        event = event.cpu_parent
    return False


def profile_step(kind: str, precision: str, steps: int = 30, batch: int = 128) -> dict:
    x = to_unit_float(mnist10k().x_train)
    torch.manual_seed(0)
    model = build_model(kind).train()
    opt = make_adam(model.parameters(), lr=1e-3)
    low = torch.bfloat16 if precision == "bf16" else None
    batches = torch.randperm(len(x)).split(batch)

    def step(idx):
        with networks_in(model, low, "cpu"):
            out = model(x[idx], None, beta=model.beta)
        opt.zero_grad(set_to_none=True)
        out.loss.total.backward()
        opt.step()

    for i in range(5):
        step(batches[i])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for i in range(steps):
            step(batches[(5 + i) % len(batches)])
        wall = time.perf_counter() - start
    groups = dict.fromkeys(GROUPS, 0.0)
    ops: dict[str, float] = {}
    for event in prof.events():
        seconds = event.self_cpu_time_total / 1e6
        group = "Bernoulli loss" if _inside_loss(event) else group_of(event.name)
        groups[group] += seconds
        if event.name.startswith("aten::") and group != "Bernoulli loss":
            ops[event.name] = ops.get(event.name, 0.0) + seconds
    groups["autograd and Python"] += max(0.0, wall - sum(groups.values()))
    total = sum(groups.values())
    non_matmul = sorted(((k, v) for k, v in ops.items() if group_of(k) != "matrix products"), key=lambda kv: -kv[1])
    return {"step_ms": 1000 * wall / steps,
            "shares": {k: v / total for k, v in groups.items()},
            "top_other_ops": [{"op": k, "ms_per_step": 1000 * v / steps, "share": v / total}
                              for k, v in non_matmul[:5]]}


def run(precisions: list[str], quick: bool = False) -> dict:
    return {f"{kind}/{p}": profile_step(kind, p, steps=5 if quick else 30)
            for kind in ("vae", "ae", "conv-vae") for p in precisions}
