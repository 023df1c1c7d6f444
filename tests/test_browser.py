"""End to end in a real Chromium (Debian's package, driven by Playwright): what a visitor does, tab by tab.

Screenshots of each tab go to test-artifacts/ (git-ignored) to be looked at.
"""

from __future__ import annotations

import contextlib
import shutil

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]

# Where on screen map point i is drawn, and the plot-area spot farthest from every point.
POINT_XY = """(i) => {
  const gd = document.querySelector('#latent-map .lm-plot');
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const fl = gd._fullLayout;
  const t = gd.data.find(tr => tr.customdata && tr.customdata.includes(i));
  const k = t.customdata.indexOf(i);
  return [r.left + fl.xaxis.l2p(t.x[k]), r.top + fl.yaxis.l2p(t.y[k])];
}"""
EMPTY_XY = """() => {
  const gd = document.querySelector('#latent-map .lm-plot');
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const fl = gd._fullLayout;
  const pts = [];
  for (const t of gd.data) if (t.customdata) for (let k = 0; k < t.x.length; k++)
    pts.push([fl.xaxis.l2p(t.x[k]), fl.yaxis.l2p(t.y[k])]);
  let best = null, bestD = -1;
  for (let px = 20; px < r.width - 20; px += 15) for (let py = 20; py < r.height - 20; py += 15) {
    let d = Infinity;
    for (const p of pts) d = Math.min(d, Math.hypot(p[0] - px, p[1] - py));
    if (d > bestD) { bestD = d; best = [r.left + px, r.top + py]; }
  }
  return best;
}"""
TIP_INK = """() => {
  const c = document.querySelector('#latent-map .lm-tip canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) ink += d[i] > 128 ? 1 : 0;
  return ink;
}"""


@contextlib.contextmanager
def open_app(app_url: str, timeout_ms: int = 30_000):
    """Debian's Chromium on the launched app, once the first example is reconstructed on load; the page's
    script errors are collected in ``page.errors``."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Debian's chromium is needed at {CHROMIUM}: apt-get install -y chromium (or `make chromium`).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.set_default_timeout(timeout_ms)
        page.goto(app_url)
        page.wait_for_selector("#rec-output img")  # the first example, reconstructed on load
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(app_url):
    with open_app(app_url) as page:
        yield page


def _src(page, selector: str) -> str | None:
    el = page.query_selector(selector)
    return el.get_attribute("src") if el else None


def _wait_new_src(page, selector: str, old: str | None) -> None:
    page.wait_for_function(
        "([sel, old]) => { const el = document.querySelector(sel); return el && el.getAttribute('src') !== old; }",
        arg=[selector, old])


def test_reconstruct_an_upload_and_a_drawing(page, digit_png, artifacts):
    page.get_by_role("tab", name="Upload", exact=True).click()
    before = _src(page, "#rec-output img")
    page.locator("#rec-upload input[type=file]").set_input_files(str(digit_png))
    _wait_new_src(page, "#rec-output img", before)
    page.wait_for_selector("#rec-scores table")
    assert "−ELBO" in page.inner_text("#rec-scores")

    page.get_by_role("tab", name="Draw", exact=True).click()
    canvas = page.locator("#rec-sketch canvas").last
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = _src(page, "#rec-output img")
    page.mouse.move(cx - 10, cy - 90)
    page.mouse.down()
    for step in range(1, 19):  # a tall stroke, slightly slanted: a "1"
        page.mouse.move(cx - 10 + step, cy - 90 + 10 * step)
    page.mouse.up()
    _wait_new_src(page, "#rec-output img", before)
    assert page.locator("#rec-neighbours .vd-thumb").count() == 5  # thumbnails cut from the digit sprite
    sprite_loaded = """() => { const d = document.querySelector('#rec-neighbours .vd-thumb div');
      return d && getComputedStyle(d).backgroundImage.includes('digits.png'); }"""
    page.wait_for_function(sprite_loaded)

    # AE vs VAE: a second model on the same drawing, a fourth tile in the panel
    before = _src(page, "#rec-output img")
    page.locator("#rec-compare input").click()
    page.locator("#rec-compare [data-testid=dropdown-option][aria-label*='tiny-ae']").click()
    _wait_new_src(page, "#rec-output img", before)
    page.wait_for_function("() => document.querySelector('#rec-output img').naturalWidth >= 4 * 224")
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "reconstruct.png"), full_page=True)
    assert not page.errors


def test_latent_map_hover_and_clicks(page, artifacts):
    page.get_by_role("tab", name="Latent map").click()
    page.wait_for_selector("#latent-map .lm-root[data-points]")
    assert int(page.get_attribute("#latent-map .lm-root", "data-points")) > 100
    legend = page.locator("#latent-map .lm-plot .legendtext").all_text_contents()
    # A model with a learnt prior (the API test trains one) also draws its centres, and says so.
    centres = ["prior's centres"] if "Grey diamonds" in page.inner_text("#map-note") else []
    assert legend == [str(d) for d in range(10)] + centres + ["your digit"]  # the drawing is the star

    # hover a point: its digit appears in the tooltip
    x, y = page.evaluate(POINT_XY, 0)
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    page.wait_for_selector("#latent-map .lm-tip:not([hidden])")
    page.wait_for_function(f"({TIP_INK})() > 10")
    assert "digit" in page.inner_text("#latent-map .lm-tip-text")

    # click it: original and reconstruction
    page.mouse.click(x, y)
    page.wait_for_selector("#map-original img")
    page.wait_for_selector("#map-recon img")
    assert "Digit #" in page.inner_text("#map-picked")

    # click empty space: that place is decoded
    ex, ey = page.evaluate(EMPTY_XY)
    page.mouse.move(ex, ey, steps=3)
    page.mouse.click(ex, ey)
    page.wait_for_selector("#map-decoded img")
    page.wait_for_function("() => document.querySelector('#map-picked').innerText.includes('Decoded the place')")
    page.wait_for_selector("#map-manifold img")  # tiny-vae has a 2-D latent
    page.screenshot(path=str(artifacts / "latent-map.png"), full_page=True)
    assert not page.errors


def test_sample_tab(page, artifacts):
    page.get_by_role("tab", name="Sample", exact=True).click()
    page.wait_for_selector("#sample-grid img")  # a first grid without asking
    before = _src(page, "#sample-grid img")
    page.locator("#sample-seed input").fill("7")
    page.locator("#sample-go").click()
    _wait_new_src(page, "#sample-grid img", before)
    page.wait_for_selector("#sample-download")
    page.screenshot(path=str(artifacts / "sample.png"), full_page=True)

    page.get_by_role("tab", name="Interpolate").click()
    page.locator("#int-go").click()
    page.wait_for_selector("#int-lerp img")
    page.wait_for_selector("#int-slerp img")
    page.wait_for_selector("#int-norms .js-plotly-plot")
    page.screenshot(path=str(artifacts / "sample-interpolate.png"), full_page=True)

    page.get_by_role("tab", name="Traverse").click()
    page.locator("#trv-go").click()
    page.wait_for_selector("#trv-grid img")
    assert "Rows, top to bottom" in page.inner_text("#trv-text")
    page.screenshot(path=str(artifacts / "sample-traverse.png"), full_page=True)
    assert not page.errors


def test_train_one_epoch_and_watch_the_curve(page, artifacts):
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-name textarea, #train-name input").first.fill("browser-run")
    epochs = page.locator("#train-epochs input[type=number]")
    epochs.fill("1")
    epochs.press("Enter")
    page.locator("#train-start").click()
    page.wait_for_function("() => document.querySelector('#train-status').innerText.includes('saved')",
                           timeout=90_000)
    page.wait_for_selector("#train-loss .js-plotly-plot .scatterlayer .trace")
    page.wait_for_selector("#train-map .js-plotly-plot")
    page.wait_for_selector("#train-recon img")
    assert "browser-run" in page.inner_text("#train-status")
    assert "100%" in page.inner_text("#train-progress")
    page.screenshot(path=str(artifacts / "train.png"), full_page=True)

    # the new model is offered on the other tabs at once
    page.get_by_role("tab", name="Reconstruct").click()
    page.locator("#rec-checkpoint input").click()
    page.wait_for_selector("#rec-checkpoint [data-testid=dropdown-option][aria-label*='browser-run']")
    page.keyboard.press("Escape")
    assert not page.errors


def test_about_tab(page, artifacts):
    page.get_by_role("tab", name="About").click()
    page.wait_for_selector("text=reparameterisation trick")
    page.get_by_role("tab", name="한국어").click()
    page.wait_for_selector("text=재매개변수화 트릭")
    page.screenshot(path=str(artifacts / "about.png"), full_page=True)
    assert not page.errors
