"""Render BENCHMARKS.md from one run's figures: each beside its anchor and its target."""

from __future__ import annotations

from . import browser_decode, thread_penalty


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def training_section(t: dict, prof: dict | None) -> list[str]:
    g = t["matmul_gflops"]
    auto = t["auto_precision"]
    precisions = t["precisions"]
    lines = [
        f"## 1. Training throughput (batch {t['batch']}, mnist-10k, CPU)",
        "",
        f"Matmul anchor, a 1024³ product in this run: fp32 {g['fp32']:.0f} GFLOP/s, bf16 {g['bf16']:.0f} GFLOP/s "
        f"({g['bf16'] / g['fp32']:.1f}×). "
        + ("Native bf16 on this CPU: yes, so `--precision auto` (the default) trains the MLP models in "
           f"{auto} and the convolutional ones in fp32 (bf16 slowed them on a CPU). " if t["native_bf16"] else
           "Native bf16 on this CPU: no (no AVX512-BF16 or AMX: bf16 is emulated), so `--precision auto` (the "
           "default) trains every model in fp32 and bf16 is not timed. ")
        + "Each samples/s figure is the best of "
        f"{t['rounds']} interleaved rounds, taken alike for ours and the reference (other processes share the cores).",
        "",
        "| model | pytorch/examples-style loop (fp32) | " + " | ".join(f"ours {p}" for p in precisions)
        + " | speed-up (auto; target ≥ 3× for vae) | matmul MFLOP/sample | "
        + " | ".join(f"share of the {p} matmul bound" for p in precisions) + " |",
        "| --- | --- | " + " | ".join("---" for _ in precisions) + " | --- | --- | "
        + " | ".join("---" for _ in precisions) + " |",
    ]
    for kind in ("vae", "ae", "conv-vae"):
        k = t[kind]
        ours = " | ".join(f"{k[p]['samples_per_s']:,.0f} ({k[p]['speedup']:.2f}×)" for p in precisions)
        speedup = f"{k['auto']['speedup']:.2f}× ({k['auto'].get('precision', auto)})"
        if kind == "vae":
            speedup += f" — {_verdict(k['auto']['speedup'] >= 3)}"
        shares = " | ".join(_pct(k[p]["share_of_matmul_bound"]) for p in precisions)
        lines.append(f"| {kind} | {k['reference_samples_per_s']:,.0f} | {ours} | {speedup} | "
                     f"{k['train_mflops_per_sample']:.2f} | {shares} |")
    lines += ["", "Share of the matmul bound: the step's matrix-product FLOPs (matmuls and convolutions, forward and "
              "backward) × our samples/s ÷ the 1024³ product's FLOP/s in the same precision."]
    par = t.get("parity")
    if par:
        epochs = next(iter(par.values()))["epochs"]
        lines += ["", f"### Quality parity: fp32 against bf16, same seed and recipe, {epochs} epochs",
                  "", "| model | recipe | validation −ELBO fp32 | bf16 | gap (target ≤ 1%) | seconds fp32 / bf16 |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for kind, r in par.items():
            recipe = ", ".join(f"{k}={v}" for k, v in {**r["model"], **r["recipe"]}.items())
            lines.append(f"| {kind} | {recipe} | {r['fp32']['neg_elbo']:.2f} | {r['bf16']['neg_elbo']:.2f} | "
                         f"{100 * r['relative_gap']:.2f}% — {_verdict(r['relative_gap'] <= 0.01)} | "
                         f"{r['fp32']['seconds']:.0f} / {r['bf16']['seconds']:.0f} |")
        lines += ["", "−ELBO in nats per validation digit (1,000 digits, stochastically binarized with seed 0 as in "
                  "training, one z per digit, evaluated in float32), after each run's best epoch."]
    elif "parity" in t:
        lines += ["", "Parity runs skipped: this CPU has no native bf16."]
    else:
        lines += ["", "Parity runs skipped (`--no-parity`)."]
    if prof:
        groups = list(next(iter(prof.values()))["shares"])
        lines += ["", "### Where a step's time goes (torch.profiler, batch 128)", "",
                  "| model / precision | ms per step (profiled) | " + " | ".join(groups)
                  + " | largest other ops (ms/step) |",
                  "| --- | --- | " + " | ".join("---" for _ in groups) + " | --- |"]
        for name, r in prof.items():
            top = ", ".join(f"{o['op'].removeprefix('aten::')} {o['ms_per_step']:.2f}" for o in r["top_other_ops"][:3])
            lines.append(f"| {name} | {r['step_ms']:.2f} | " + " | ".join(_pct(r["shares"][k]) for k in groups)
                         + f" | {top} |")
        lines += ["", "Self CPU time of each op, grouped; \"autograd and Python\" is the autograd engine's own "
                  "time plus the wall time no op accounts for."]
    if "cuda" in t:
        c = t["cuda"]
        lines += ["", f"### CUDA ({c['device']}, data on the device)", "",
                  f"Matmul 1024³: fp32 {c['matmul_gflops']['fp32']:.0f} GFLOP/s, "
                  f"bf16 {c['matmul_gflops']['bf16']:.0f}.",
                  "", "| vae | fp32 samples/s | bf16 samples/s |", "| --- | --- | --- |"]
        for batch in (128, 1024):
            lines.append(f"| batch {batch} | {c[f'vae_b{batch}_fp32']:,.0f} | {c[f'vae_b{batch}_bf16']:,.0f} |")
    return lines + [""]


def step_variants_section(v: dict) -> list[str]:
    """One row per model and precision, one column per variant: its step time ÷ the engine's."""
    rows: dict[str, dict[str, dict]] = {}
    for name, r in v.items():
        kind, precision, variant = name.split("/")
        rows.setdefault(f"{kind}/{precision}", {})[variant] = r
    variants = list(dict.fromkeys(variant for row in rows.values() for variant in row if variant != "engine"))
    lines = ["", "### What else was tried in the step (benchmarks/step_experiments.py, batch 128)", "",
             "Each variant changes one thing in the engine's step; the figure is its step time ÷ the engine's "
             "(below 1: faster), the best of interleaved bursts. The engine is what `train()` runs: fused Adam, "
             "batches gathered by index, and in bf16 the layers under autocast with the losses in float32.",
             "", "| model / precision | engine ms per step | " + " | ".join(variants) + " |",
             "| --- | --- | " + " | ".join("---" for _ in variants) + " |"]
    for name, row in rows.items():
        cells = []
        for variant in variants:
            r = row.get(variant)
            cells.append("—" if r is None else f"{r['vs_engine']:.2f}"
                         + (f" ({r['first_3_steps_s']:.0f} s to compile)" if variant == "compile" else ""))
        lines.append(f"| {name} | {row['engine']['ms_per_step']:.2f} | " + " | ".join(cells) + " |")
    return lines + ["", "adam-loop: Adam's per-tensor loop instead of the fused kernel; autocast-all: the losses "
                    "in bf16 too; channels-last: the conv models' layout; slices: batches sliced from a shuffled copy; "
                    "compile: `torch.compile` (inductor) of the forward and loss, its first three steps' time "
                    "beside it.", ""]


def render(r: dict, notes: str = "") -> str:
    m = r["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {m['date']}: {m['cpu']}, {m['cores']} cores, torch {m['threads']} threads, "
        f"torch {m['torch']}, Python {m['python']}, device {m['device']}.",
        "Every figure is a ratio against an anchor measured in the same run; absolute times drift on shared machines.",
        "",
    ]
    ran = [name for name in ("training", "latency", "browser", "maps") if name in r]
    if len(ran) < 4:
        lines += [f"This run measured only: {', '.join(ran)} (`python -m benchmarks --only ...`).", ""]
    if "training" in r:
        lines += training_section(r["training"], r.get("profile"))
        if r.get("step_variants"):
            lines = lines[:-1] + step_variants_section(r["step_variants"])
    if "latency" in r:
        lines += latency_section(r["latency"])
    if "browser" in r:
        lines += browser_section(r["browser"])
    if "maps" in r:
        lines += maps_section(r["maps"])
    if "latency" in r:
        lines += memory_section(r["latency"])
    if notes:
        lines += ["## Notes", "", notes, ""]
    return "\n".join(lines)


def latency_section(lat: dict) -> list[str]:
    lines = [
        "## 2. Interactive latency (gradio_client against the launched app)",
        "",
        f"The floor: a minimal Gradio app with one queued image-in, image-out endpoint (benchmarks/floor_app.py), "
        f"started beside the app and timed round-robin with the same image: p50 {lat['floor']['p50_ms']:.1f} ms, "
        f"p95 {lat['floor']['p95_ms']:.1f} ms.",
        "",
        "| endpoint | p50 ms | p95 ms | p50 ÷ floor p50 | p50 ÷ /health p50 | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    targets = {"/reconstruct": 1.5, "/sample": 1.5}
    for name in ("/health", "/reconstruct", "/sample", "/interpolate", "/latent_map"):
        e = lat[name]
        vs_floor = e["vs_floor_p50"]
        if name in targets:
            target = f"≤ {targets[name]}× the floor — {_verdict(vs_floor <= targets[name])}"
        elif name == "/latent_map":
            target = f"≤ 500 ms — {_verdict(e['p50_ms'] <= 500)}"
        elif name == "/health":
            target = "not queued"
        else:
            target = "—"
        vs_health = f"{e['vs_health_p50']:.2f}" if "vs_health_p50" in e else "1"
        lines.append(f"| {name} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | {vs_floor:.2f} | {vs_health} | {target} |")
    return lines + [""]


def browser_section(b: dict) -> list[str]:
    up, tt = b["upload"], b["train_tab"]
    return [
        "## 3. In the browser (Debian's Chromium, headless, driven by Playwright)",
        "",
        "| what | p50 ms | p95 ms | anchor | target |",
        "| --- | --- | --- | --- | --- |",
        f"| Reconstruct: a picture chosen on Upload until its reconstruction is drawn | {up['app']['p50_ms']:.0f} | "
        f"{up['app']['p95_ms']:.0f} | the floor's page, same pictures: p50 {up['floor']['p50_ms']:.0f} ms "
        f"({up['vs_floor_p50']:.2f}×) | p50 ≤ 250 ms — {_verdict(up['app']['p50_ms'] <= 250)} |",
        "",
        f"Training with the Train tab open (its curves, previews and live map streaming to the page) against the "
        f"CLI training the same model (vae, latent 2, batch 128, the tab's defaults) for {tt['epochs']} epochs, "
        f"the best of {tt['rounds']} interleaved runs each: {tt['tab_samples_per_s']:,.0f} against "
        f"{tt['cli_samples_per_s']:,.0f} samples/s, {_pct(tt['ratio'])} "
        f"(target ≥ 90% — {_verdict(tt['ratio'] >= 0.9)}).",
        "",
        *([thread_penalty.render(b["thread_penalty"]), ""] if "thread_penalty" in b else []),
    ] + (browser_decode.render(b["decode"]) if "decode" in b else [])


def maps_section(mp: dict) -> list[str]:
    return [
        "## 4. Latent map, uncached (10,000 digits, vae-mnist codes)",
        "",
        f"- PCA: {1000 * mp['pca_s']:.0f} ms.",
        f"- t-SNE as the app runs it (PCA-50 first, max_iter {mp['tsne_app_max_iter']}): {mp['tsne_app_s']:.1f} s; "
        f"scikit-learn's default TSNE on the same codes: {mp['tsne_sklearn_default_s']:.1f} s; ratio "
        f"{mp['ratio_app_vs_sklearn']:.2f} (target ≤ 0.5 — {_verdict(mp['ratio_app_vs_sklearn'] <= 0.5)}).",
        f"- Share of each point's 10 nearest latent neighbours kept in 2-D: ours {mp['knn10_app']:.3f}, "
        f"scikit-learn default {mp['knn10_sklearn']:.3f} (ours with 1000 iterations: {mp['knn10_ours_1000']:.3f}).",
    ] + ([
        f"- UMAP as the app runs it (umap-learn, seeded): {mp['umap_s']:.1f} s for the same codes, "
        f"{mp['ratio_umap_vs_tsne_app']:.2f}× the app's t-SNE (its numba compile, once per process, timed apart: "
        f"{mp['umap_first_call_compile_s']:.1f} s); 10 nearest latent neighbours kept in 2-D: {mp['knn10_umap']:.3f} "
        f"against t-SNE's {mp['knn10_app']:.3f}. UMAP's transform (your digit on the map) and inverse (a place "
        "decoded) are approximate: umap-learn's own rules from the saved codes and embedding.",
    ] if "umap_s" in mp else []) + [
        "",
    ]


def memory_section(lat: dict) -> list[str]:
    return [
        "## 5. Cold start",
        "",
        f"`python app.py` to the first successful `/health`: {lat['cold_start_s']:.1f} s "
        f"(target ≤ 8 s — {_verdict(lat['cold_start_s'] <= 8)}).",
        "",
        "## 6. Memory",
        "",
        f"App RSS at rest {lat['memory']['rest_mb']:.0f} MB, after {lat['memory']['requests']} mixed requests "
        f"{lat['memory']['after_mb']:.0f} MB: growth {100 * lat['memory']['growth']:+.1f}% "
        f"(target ≤ 10% — {_verdict(lat['memory']['growth'] <= 0.10)}).",
        "",
    ]
