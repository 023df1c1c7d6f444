"""`make bench`: run every benchmark and write BENCHMARKS.md (figures as ratios against anchors in the same run)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "cores": os.cpu_count(), "torch": torch.__version__,
            "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


SECTIONS = ("train", "maps", "latency", "browser")


def run_all(quick: bool, only: list[str] | None = None, parity: bool = True) -> dict:
    """Every benchmark (or the ``only`` ones) in one run; ``parity=False`` skips the 30-epoch parity runs."""
    only = list(only or SECTIONS)
    results = {"machine": machine(), "quick": quick}
    if "train" in only:
        from . import profile_step, step_experiments, train_throughput

        results["training"] = train_throughput.run(quick=quick, parity_runs=parity)
        results["profile"] = profile_step.run(results["training"]["precisions"], quick=quick)
        results["step_variants"] = step_experiments.run_for_bench(results["training"]["precisions"], quick=quick)
    os.environ.setdefault("VAEDEMO_DEVICE", "cpu")
    if "maps" in only:
        from vaedemo import load_model

        from . import maps

        results["maps"] = maps.run(load_model("vae-mnist"), quick=quick)
    if "latency" in only:
        from . import latency

        with tempfile.TemporaryDirectory() as tmp:
            results["latency"] = latency.run(repeats=3 if quick else 50, tmpdir=tmp,
                                             memory_requests=8 if quick else 200)
    if "browser" in only:
        from . import browser_decode, browser_latency

        with tempfile.TemporaryDirectory() as tmp:
            results["browser"] = {**browser_latency.run(quick, tmp), "decode": browser_decode.run(quick)}
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--quick", action="store_true", help="one short iteration of each, to check they run")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    p.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    p.add_argument("--only", action="append", choices=SECTIONS, default=None,
                   help="run only this section (repeatable); BENCHMARKS.md then shows only what ran")
    p.add_argument("--no-parity", action="store_true", help="skip the fp32/bf16 parity runs (30 epochs each)")
    args = p.parse_args()
    results = run_all(args.quick, only=args.only, parity=not args.no_parity)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.no_write:
        from .report import render

        notes = (Path(__file__).parent / "notes.md").read_text()
        OUT.write_text(render(results, notes))
        print(f"wrote {OUT}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
