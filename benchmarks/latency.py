"""Interactive latency through gradio_client against the launched app.

The floor is a minimal Gradio app (benchmarks/floor_app.py) with one queued image-in, image-out
endpoint, started beside the app and timed in the same rounds with the same image; /health (not
queued) is kept as a second anchor. Endpoints are timed round-robin, so a disturbance from other
processes falls on all of them alike.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from vaedemo.data import bundled_digits

from .app_server import launched_app, launched_floor, rss_mb


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
    from gradio_client import Client, handle_file

    png = _digit_png(tmpdir)
    with launched_floor() as (floor_url, _, _), launched_app() as (url, proc, cold_s):
        client = Client(url, verbose=False)
        floor_client = Client(floor_url, verbose=False)
        calls = _calls(client, png, checkpoint)
        timed = {"floor": lambda: floor_client.predict(handle_file(png), api_name="/floor"), **calls}
        for fn in timed.values():  # warm every path once (model load, caches)
            fn()
        rest_mb = rss_mb(proc.pid)
        out = {"cold_start_s": cold_s}
        times = {name: [] for name in timed}
        for _ in range(repeats):
            for name, fn in timed.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            out[name] = _percentiles(ts)
        floor, health = out["floor"]["p50_ms"], out["/health"]["p50_ms"]
        for name in ("/health", "/reconstruct", "/sample", "/interpolate", "/latent_map"):
            out[name]["vs_floor_p50"] = out[name]["p50_ms"] / floor
            if name != "/health":
                out[name]["vs_health_p50"] = out[name]["p50_ms"] / health
        # Memory: at rest (after warm-up), then after a mixed series of requests.
        names = [n for n in calls if n != "/health"]
        for i in range(memory_requests):
            calls[names[i % len(names)]]()
        out["memory"] = {"rest_mb": rest_mb, "after_mb": rss_mb(proc.pid), "requests": memory_requests}
        out["memory"]["growth"] = out["memory"]["after_mb"] / rest_mb - 1
    return out
