"""Smoke test: every benchmark runs one short iteration and the report renders (no timings asserted)."""

from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.mark.slow
def test_benchmarks_run_once_and_render(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_DEVICE", "cpu")
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(SHIPPED))  # other tests' session fixtures may point elsewhere
    from benchmarks.__main__ import run_all
    from benchmarks.report import render

    results = run_all(quick=True)
    for kind in ("vae", "ae"):
        t = results["training"][kind]
        assert t["engine_samples_per_s"] > 0 and t["reference_samples_per_s"] > 0
        assert t["train_mflops_per_sample"] > 0
    assert results["maps"]["n"] == 300 and 0 <= results["maps"]["knn10_app"] <= 1
    lat = results["latency"]
    assert lat["cold_start_s"] > 0 and lat["memory"]["rest_mb"] > 0
    assert all(lat[name]["p50_ms"] > 0 for name in ("/health", "/reconstruct", "/sample", "/interpolate", "/latent_map"))
    text = render(results)
    assert "## 1. Training throughput" in text and "## 5. Memory" in text and "| vae |" in text
