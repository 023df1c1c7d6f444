"""What a visitor sees in Chromium (Debian's, driven by Playwright), beside anchors measured in the same run:

- choosing a picture on the Reconstruct tab's Upload until its reconstruction is drawn on screen, and the same on
  the latency floor's page (benchmarks/floor_app.py: one queued image-in, image-out endpoint);
- training throughput with the Train tab open in the browser (curves, previews and the live map streaming to the
  page) against the CLI training the same model with the same settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vaedemo.data import bundled_digits

from . import thread_penalty
from .app_server import launched_app, launched_floor
from .browser_decode import ARGS, CHROMIUM

# The Train tab's defaults (vaedemo/ui/train.py), which the CLI run repeats.
TRAIN_CLI = ["--model", "vae", "--latent-dim", "2", "--batch-size", "128", "--lr", "0.001"]
NEW_PICTURE = """([sel, old]) => { const el = document.querySelector(sel);
  return el && el.getAttribute('src') !== old && el.complete && el.naturalWidth > 0; }"""


def digit_pngs(folder: Path, n: int = 6) -> list[str]:
    """n different bundled digits, dark on white and enlarged, as photos of paper would be."""
    x, _ = bundled_digits()
    paths = []
    for i in range(n):
        path = folder / f"digit-{i}.png"
        Image.fromarray(255 - x[i]).resize((280, 280)).save(path)
        paths.append(str(path))
    return paths


def _percentiles(times: list[float]) -> dict:
    return {"p50_ms": 1000 * float(np.percentile(times, 50)), "p95_ms": 1000 * float(np.percentile(times, 95)),
            "n": len(times)}


def _upload_times(page, upload: str, shown: str, pngs: list[str], repeats: int, start: int = 0) -> list[float]:
    """Seconds from handing the file input a picture to the answer's picture loaded and drawn, for each of
    ``repeats`` pictures (``start`` picks the first)."""
    times = []
    for i in range(start, start + repeats):
        clear = page.locator(f"{upload} button[aria-label='Clear']")
        if clear.count():
            clear.first.click()
            page.wait_for_selector(f"{upload} input[type=file]", state="attached")
        before = page.get_attribute(shown, "src") if page.query_selector(shown) else None
        t0 = time.perf_counter()
        page.locator(f"{upload} input[type=file]").set_input_files(pngs[i % len(pngs)])
        page.wait_for_function(NEW_PICTURE, arg=[shown, before])
        times.append(time.perf_counter() - t0)
    return times


def upload_latency(repeats: int, tmpdir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    pngs = digit_pngs(tmpdir)
    with launched_floor() as (floor_url, _, _), launched_app() as (url, _, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        app = browser.new_page(viewport={"width": 1400, "height": 1000})
        app.goto(url)
        app.wait_for_selector("#rec-output img")
        app.get_by_role("tab", name="Upload", exact=True).click()
        floor = browser.new_page(viewport={"width": 1000, "height": 800})
        floor.goto(floor_url)
        floor.wait_for_selector("#floor-in input[type=file]", state="attached")
        pages = {"app": (app, "#rec-upload", "#rec-output img"), "floor": (floor, "#floor-in", "#floor-out img")}
        for args in pages.values():  # one upload each first, to warm the path (model load, caches)
            _upload_times(*args, pngs, 1)
        times = {"app": [], "floor": []}
        for i in range(repeats):  # interleaved, so a disturbance falls on both alike
            for name, args in pages.items():
                times[name] += _upload_times(*args, pngs, 1, start=i + 1)
        browser.close()
    out = {name: _percentiles(ts) for name, ts in times.items()}
    out["vs_floor_p50"] = out["app"]["p50_ms"] / out["floor"]["p50_ms"]
    return out


def _samples_per_s(folder: Path) -> float:
    """The median of the run's epochs after the first (which also warms up)."""
    history = json.loads((folder / "config.json").read_text())["history"]
    rates = [e["samples_per_s"] for e in history[1:] or history]
    return float(np.median(rates))


def train_tab_throughput(epochs: int, tmpdir: Path, rounds: int = 2) -> dict:
    """The same training from the CLI and in the app with the Train tab open, interleaved ``rounds`` times; the
    best of each, as the training benchmark takes its figures (other processes share the cores)."""
    from playwright.sync_api import sync_playwright

    root = tmpdir / "train-checkpoints"
    app_env = {"VAEDEMO_CHECKPOINT_DIR": str(root), "VAEDEMO_TRAINING": "on", "VAEDEMO_DEVICE": "cpu"}
    rates = {"tab": [], "cli": []}
    with launched_app(app_env) as (url, _, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Train").click()  # no models yet: nothing on Reconstruct to wait for
        page.set_default_timeout(600_000)
        for r in range(rounds):
            subprocess.run([sys.executable, "-m", "vaedemo", "train", *TRAIN_CLI, "--epochs", str(epochs), "--quiet",
                            "--name", f"bench-cli-{r}"], env={**os.environ, **app_env}, check=True,
                           stdout=subprocess.DEVNULL)
            rates["cli"].append(_samples_per_s(root / f"bench-cli-{r}"))
            page.locator("#train-name textarea, #train-name input").first.fill(f"bench-tab-{r}")
            field = page.locator("#train-epochs input[type=number]")
            field.fill(str(epochs))
            field.press("Enter")
            page.locator("#train-start").click()
            page.wait_for_function(f"() => document.querySelector('#train-status').innerText.includes('bench-tab-{r}')"
                                   " && document.querySelector('#train-status').innerText.includes('saved')")
            rates["tab"].append(_samples_per_s(root / f"bench-tab-{r}"))
        browser.close()
    tab, cli = max(rates["tab"]), max(rates["cli"])
    return {"epochs": epochs, "rounds": rounds, "tab_samples_per_s": tab, "cli_samples_per_s": cli, "ratio": tab / cli}


def run(quick: bool, tmpdir: str) -> dict:
    folder = Path(tmpdir)
    return {"upload": upload_latency(1 if quick else 30, folder),
            "train_tab": train_tab_throughput(1 if quick else 5, folder, rounds=1 if quick else 3),
            "thread_penalty": thread_penalty.run(quick)}
