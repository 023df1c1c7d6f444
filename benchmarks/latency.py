"""Interactive latency through gradio_client against the launched app, with /health as the floor."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from vaedemo.data import bundled_digits

from .app_server import launched_app, rss_mb


def _digit_png(tmpdir) -> str:
    x, _ = bundled_digits()
    path = f"{tmpdir}/digit.png"
    Image.fromarray(255 - x[0]).resize((280, 280)).save(path)  # dark ink on white paper, as a photo
    return path


def _percentiles(times: list[float]) -> dict:
    return {"p50_ms": 1000 * float(np.percentile(times, 50)), "p95_ms": 1000 * float(np.percentile(times, 95))}


def _calls(client, png, checkpoint):
    from gradio_client import handle_file

    return {
        "/health": lambda: client.predict(api_name="/health"),
        "/reconstruct": lambda: client.predict(image=handle_file(png), checkpoint=checkpoint, api_name="/reconstruct"),
        "/sample": lambda: client.predict(checkpoint, 64, 1.0, 0, "any", api_name="/sample"),
        "/interpolate": lambda: client.predict(checkpoint, None, None, 1, 7, 10, api_name="/interpolate"),
        "/latent_map": lambda: client.predict(checkpoint, "pca", 10_000, None, api_name="/latent_map"),
    }


def run(checkpoint: str = "vae-mnist", repeats: int = 50, tmpdir: str = "/tmp", memory_requests: int = 200) -> dict:
    from gradio_client import Client

    png = _digit_png(tmpdir)
    with launched_app() as (url, proc, cold_s):
        client = Client(url, verbose=False)
        calls = _calls(client, png, checkpoint)
        for fn in calls.values():  # warm every path once (model load, caches)
            fn()
        rest_mb = rss_mb(proc.pid)
        out = {"cold_start_s": cold_s}
        for name, fn in calls.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[name] = _percentiles(times)
        floor = out["/health"]["p50_ms"]
        for name in ("/reconstruct", "/sample", "/interpolate", "/latent_map"):
            out[name]["vs_health_p50"] = out[name]["p50_ms"] / floor
        # Memory: at rest (after warm-up), then after a mixed series of requests.
        names = [n for n in calls if n != "/health"]
        for i in range(memory_requests):
            calls[names[i % len(names)]]()
        out["memory"] = {"rest_mb": rest_mb, "after_mb": rss_mb(proc.pid), "requests": memory_requests}
        out["memory"]["growth"] = out["memory"]["after_mb"] / rest_mb - 1
    return out
