"""Decoding in the browser: headless Chromium (Playwright, Debian's /usr/bin/chromium) on the launched app,
onnxruntime-web's WASM backend, for every shipped model: on the threads the page uses as served (it is
cross-origin isolated, so min(4, cores)), and on one thread (the same page without its COOP/COEP headers, as
in a frame on another site), which is what the issue's targets are set for.

- first use: a fresh page's first session of the model (the WASM runtime and decoder.onnx downloaded over
  loopback, compiled and started), from the call to a ready session;
- decode one digit and re-decode 64 samples: ``vaedemoLive.decode``, timed inside the page;
- one hover frame: what the Latent map does per pointer move (place → code by the map's rule, decode, draw
  into the panel's canvas), on the shipped PCA and t-SNE maps;
- bytes: what the browser downloads once for it, as sent (compressed), from the responses' own sizes.

``run(quick)`` returns the figures; ``render(results)`` the Markdown lines for BENCHMARKS.md.
"""

from __future__ import annotations

import json

import numpy as np

from .app_server import launched_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
MODELS = ["ae-mnist", "vae-mnist", "vae-mnist-2d", "cvae-mnist", "conv-vae-mnist", "gan-mnist"]
TARGETS = {"decode_one_p95_ms": 5.0, "hover_frame_p95_ms": 16.0, "decode_64_p95_ms": 50.0, "first_use_s": 1.0}

TIMED = """async ([model, inverses, repeats]) => {
  const L = vaedemoLive;
  await L.session(model, 'decoder');
  const D = model.latent_dim;
  const z1 = new Float32Array(D).map(() => Math.random() * 2 - 1);
  const z64 = new Float32Array(64 * D).map(() => Math.random() * 2 - 1);
  const labels64 = Array.from({length: 64}, (_, i) => i % 10);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 112;
  const out = {one: [], many: [], frames: {}};
  for (let i = 0; i < 5; i++) await L.decode(model, z64, 64, labels64);  // warm
  for (let i = 0; i < repeats; i++) {
    let t = performance.now();
    await L.decode(model, z1, 1, [3]);
    out.one.push(performance.now() - t);
  }
  for (let i = 0; i < Math.max(10, repeats / 4); i++) {
    const t = performance.now();
    await L.decode(model, z64, 64, labels64);
    out.many.push(performance.now() - t);
  }
  for (const [method, inv] of Object.entries(inverses)) {
    const u = L.unpack(inv);
    const xs = u.coords ? [u.coords[0], u.coords[1]] : [0, 0];
    out.frames[method] = [];
    for (let i = 0; i < repeats; i++) {
      const x = xs[0] + (Math.random() - 0.5) * 4, y = xs[1] + (Math.random() - 0.5) * 4;
      const t = performance.now();
      const c = L.placeToCode(u, x, y);
      const probs = await L.decode(model, c.z, 1, c.label === null ? null : [c.label]);
      L.draw(canvas, probs, 0);
      out.frames[method].push(performance.now() - t);
    }
  }
  return out;
}"""


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _not_isolated(route) -> None:
    """Serve the page without its cross-origin isolation headers, so onnxruntime-web runs on one thread."""
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("cross-origin-opener-policy", "cross-origin-embedder-policy")}
    route.fulfill(response=response, headers=headers)


def _open(browser, url: str, isolated: bool = True):
    """A fresh page on the Latent map tab (which loads the runtime), once its map's model runs; with the sizes of
    the runtime's and the models' responses as sent, by URL. ``isolated=False`` strips the page's COOP/COEP."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    if not isolated:
        page.route(url, _not_isolated)
    sizes: dict[str, int] = {}

    def on_finished(request):
        if "/vaedemo-static/ort/" in request.url or "/vaedemo-static/onnx/" in request.url:
            try:
                size, key = int(request.sizes()["responseBodySize"]), request.url.split("?")[0]
                if size >= 0:  # -1: not known (a second request for a file the page already holds)
                    sizes[key] = max(sizes.get(key, 0), size)
            except Exception:  # a request that failed has no sizes
                pass

    page.on("requestfinished", on_finished)
    page.set_default_timeout(120_000)
    page.goto(url)
    page.wait_for_selector("#rec-output img")
    ready_ms = page.evaluate("() => performance.now()")  # the first tab shows its reconstruction
    page.get_by_role("tab", name="Latent map").click()
    page.wait_for_function(
        "() => ['browser', 'server'].includes(document.querySelector('#latent-map .lm-root').dataset.live)"
    )
    return page, sizes, ready_ms


def run(quick: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    from vaedemo.inference import browser, full_map
    from vaedemo.ui.latent_map import pack_inverse

    repeats = 20 if quick else 200
    models = MODELS[:2] if quick else MODELS
    results: dict = {"repeats": repeats, "backend": "wasm", "models": {}}
    with launched_app() as (url, _, _), sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, sizes, page_ready_ms = _open(chromium, url)
            live = page.get_attribute("#latent-map .lm-root", "data-live")
            if live != "browser":
                raise RuntimeError("The page could not run the model in the browser (it fell back to the server).")
            stats = page.evaluate("() => vaedemoLive.stats")
            results["threads"] = stats["threads"]
            results["page_first_use"] = {
                "checkpoint": page.get_attribute("#latent-map .lm-root", "data-checkpoint"),
                "s": stats["mapFirstUse"] / 1000,
                "runtime_s": stats["runtime"] / 1000,
                "runtime_ready_s": stats["runtimeReady"] / 1000,
                "page_ready_s": page_ready_ms / 1000,
            }
            for i, name in enumerate(models):
                model = browser.browser_model(name)
                inverses = {}
                for method in ("pca", "tsne"):
                    packed = pack_inverse(browser.map_inverse(full_map(name, method)), model["latent_dim"])
                    inverses[method] = json.loads(json.dumps(packed))
                fresh = {**model, "version": f"{model['version']}-bench{i}"}  # not in the page's cache
                first_ms = page.evaluate(
                    "async (m) => { const t = performance.now(); await vaedemoLive.session(m, 'decoder');"
                    " return performance.now() - t; }",
                    fresh,
                )
                timed = page.evaluate(TIMED, [fresh, inverses, repeats])
                results["models"][name] = {
                    "latent_dim": model["latent_dim"],
                    "first_use_s": first_ms / 1000,
                    "decode_one_p50_ms": float(np.median(timed["one"])),
                    "decode_one_p95_ms": _p95(timed["one"]),
                    "decode_64_p95_ms": _p95(timed["many"]),
                    "hover_frame_p95_ms": {m: _p95(v) for m, v in timed["frames"].items()},
                    "map_data_bytes": {m: len(json.dumps(inv)) for m, inv in inverses.items()},
                    "decoder_bytes": sizes.get(f"{url}vaedemo-static/onnx/{name}/decoder.onnx", 0),
                }
            page.close()
            single, _, _ = _open(chromium, url, isolated=False)
            if single.evaluate("() => vaedemoLive.stats.threads") != 1:
                raise RuntimeError("Without its isolation headers the page still decoded on several threads.")
            for i, name in enumerate(models):
                model = browser.browser_model(name)
                fresh = {**model, "version": f"{model['version']}-single{i}"}
                timed = single.evaluate(TIMED, [fresh, {}, repeats])
                results["models"][name]["one_thread"] = {"decode_one_p95_ms": _p95(timed["one"]),
                                                         "decode_64_p95_ms": _p95(timed["many"])}
            single.close()
        finally:
            chromium.close()
    results["runtime_bytes"] = {k.rsplit("/", 1)[-1]: v for k, v in sizes.items() if "/ort/" in k}
    return results


def render(results: dict) -> list[str]:
    """Markdown lines: one row per model, the targets in the header."""
    t = TARGETS
    lines = [
        "### Decoding in the browser",
        "",
        f"Headless Chromium on the launched app, onnxruntime-web WASM on the {results['threads']} thread(s) the "
        "page uses as served (it is cross-origin isolated), and on 1 thread (the same page without its COOP/COEP "
        f"headers); {results['repeats']} timed calls each, timed inside the page. Targets, set for one thread: "
        f"first use ≤ {t['first_use_s']:g} s, one digit p95 ≤ {t['decode_one_p95_ms']:g} ms, one hover frame p95 ≤ "
        f"{t['hover_frame_p95_ms']:g} ms, 64 samples p95 ≤ {t['decode_64_p95_ms']:g} ms.",
        "",
        "| model | latent | first use | one digit p50 / p95 | hover frame p95 (PCA / t-SNE) | 64 samples p95 "
        "| one digit / 64 samples p95, 1 thread | decoder.onnx sent | map data (t-SNE) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        onnx = r["decoder_bytes"]
        frames = r["hover_frame_p95_ms"]
        single = r.get("one_thread", {})
        lines.append(
            f"| {name} | {r['latent_dim']} | {r['first_use_s']:.2f} s | {r['decode_one_p50_ms']:.2f} / "
            f"{r['decode_one_p95_ms']:.2f} ms | {frames.get('pca', float('nan')):.2f} / "
            f"{frames.get('tsne', float('nan')):.2f} ms | {r['decode_64_p95_ms']:.1f} ms "
            f"| {single.get('decode_one_p95_ms', float('nan')):.2f} / "
            f"{single.get('decode_64_p95_ms', float('nan')):.1f} ms"
            f" | {onnx / 1e6:.2f} MB "
            f"| {r['map_data_bytes'].get('tsne', 0) / 1e6:.2f} MB |"
        )
    runtime = results["runtime_bytes"]
    first = results["page_first_use"]
    lines += [
        "",
        f"First use on a page, the wait a visitor sees: from the Latent map's arrival until its panel decodes "
        f"{first['checkpoint']} in the browser, {first['s']:.2f} s. The runtime (about 15 MB of WASM) starts "
        f"loading with the page, from its head: it took {first['runtime_s']:.2f} s and was ready "
        f"{first['runtime_ready_s']:.2f} s after navigation, while the first tab showed its reconstruction at "
        f"{first['page_ready_s']:.2f} s (the sketchpad's live panel then opens the default model's files). "
        "The runtime, downloaded once, as sent: "
        + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(runtime.items()))
        + f" ({sum(runtime.values()) / 1e6:.2f} MB). A model's first use in the table is its decoder's download "
        "and session start with the runtime already loaded; the map data is the JSON the map adds for it.",
        "",
    ]
    return lines


if __name__ == "__main__":
    import sys

    out = run(quick="--quick" in sys.argv)
    print(json.dumps(out, indent=1))
    print("\n".join(render(out)))
