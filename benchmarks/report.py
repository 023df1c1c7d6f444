"""Render BENCHMARKS.md from one run's figures: each beside its anchor and its target."""

from __future__ import annotations


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(r: dict, notes: str = "") -> str:
    m, t, mp, lat = r["machine"], r["training"], r["maps"], r["latency"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {m['date']}: {m['cpu']}, {m['cores']} cores, torch {m['threads']} threads, "
        f"torch {m['torch']}, Python {m['python']}, device {m['device']}.",
        "Every figure is a ratio against an anchor measured in the same run; absolute times drift on shared machines.",
        "",
        "## 1. Training throughput (batch 128, mnist-10k)",
        "",
        f"fp32 matmul (1024×1024) on this machine: {t['matmul_gflops']:.1f} GFLOP/s.",
        "",
        "| model | ours (samples/s) | pytorch/examples-style loop | speed-up (target ≥ 3×) | training MFLOP/sample | share of matmul peak |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("vae", "ae"):
        k = t[kind]
        target = f"{k['speedup']:.2f}× — {_verdict(k['speedup'] >= 3)}"
        share = f"{100 * k['share_of_matmul_peak']:.0f}%" + (f" — {_verdict(k['share_of_matmul_peak'] >= 0.65)} (target ≥ 65%)" if kind == "vae" else "")
        lines.append(f"| {kind} | {k['engine_samples_per_s']:,.0f} | {k['reference_samples_per_s']:,.0f} | {target} | "
                     f"{k['train_mflops_per_sample']:.2f} | {share} |")
    if "cuda" in t:
        lines += ["", f"CUDA: {t['cuda']}"]
    lines += [
        "",
        "## 2. Interactive latency (gradio_client against the launched app)",
        "",
        "| endpoint | p50 ms | p95 ms | p50 ÷ /health p50 | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    targets = {"/reconstruct": 1.5, "/sample": 1.5}
    for name in ("/health", "/reconstruct", "/sample", "/interpolate", "/latent_map"):
        e = lat[name]
        ratio = e.get("vs_health_p50")
        if name in targets:
            target = f"≤ {targets[name]}× — {_verdict(ratio <= targets[name])}"
        elif name == "/latent_map":
            target = f"≤ 500 ms — {_verdict(e['p50_ms'] <= 500)}"
        elif name == "/health":
            target = "the floor"
        else:
            target = "—"
        lines.append(f"| {name} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | {ratio:.2f} | {target} |" if ratio
                     else f"| {name} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | 1 | {target} |")
    lines += [
        "",
        "## 3. Latent map, uncached (10,000 digits, vae-mnist codes)",
        "",
        f"- PCA: {1000 * mp['pca_s']:.0f} ms.",
        f"- t-SNE as the app runs it (PCA-50 first, max_iter {mp['tsne_app_max_iter']}): {mp['tsne_app_s']:.1f} s; "
        f"scikit-learn's default TSNE on the same codes: {mp['tsne_sklearn_default_s']:.1f} s; ratio "
        f"{mp['ratio_app_vs_sklearn']:.2f} (target ≤ 0.5 — {_verdict(mp['ratio_app_vs_sklearn'] <= 0.5)}).",
        f"- Share of each point's 10 nearest latent neighbours kept in 2-D: ours {mp['knn10_app']:.3f}, "
        f"scikit-learn default {mp['knn10_sklearn']:.3f} (ours with 1000 iterations: {mp['knn10_ours_1000']:.3f}).",
        "",
        "## 4. Cold start",
        "",
        f"`python app.py` to the first successful `/health`: {lat['cold_start_s']:.1f} s "
        f"(target ≤ 8 s — {_verdict(lat['cold_start_s'] <= 8)}).",
        "",
        "## 5. Memory",
        "",
        f"App RSS at rest {lat['memory']['rest_mb']:.0f} MB, after {lat['memory']['requests']} mixed requests "
        f"{lat['memory']['after_mb']:.0f} MB: growth {100 * lat['memory']['growth']:+.1f}% "
        f"(target ≤ 10% — {_verdict(lat['memory']['growth'] <= 0.10)}).",
        "",
    ]
    if notes:
        lines += ["## Notes", "", notes, ""]
    return "\n".join(lines)
