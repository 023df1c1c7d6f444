"""The map tools in a real Chromium (Debian's package, driven by Playwright): a lasso shows its digits, the
strength slider changes the moved digit, and hovering a digit in one compared map rings it in the other.

Screenshots go to test-artifacts/ (git-ignored) to be looked at.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_browser import open_app

pytestmark = pytest.mark.browser

# The plot area of map `which` ('a' or 'b') on screen, and where its point with payload index i is drawn.
AREA = """(which) => {
  const r = document.querySelector('#latent-map .lm-plot-' + which + ' .nsewdrag').getBoundingClientRect();
  return [r.left, r.top, r.width, r.height];
}"""
POINT = """([which, i]) => {
  const gd = document.querySelector('#latent-map .lm-plot-' + which);
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const fl = gd._fullLayout;
  const t = gd.data.find(tr => tr.customdata && tr.customdata.includes(i));
  const k = t.customdata.indexOf(i);
  return [r.left + fl.xaxis.l2p(t.x[k]), r.top + fl.yaxis.l2p(t.y[k])];
}"""
# The last trace of a map is its 'linked' ring; where it is, in data coordinates.
LINKED = """(which) => {
  const gd = document.querySelector('#latent-map .lm-plot-' + which);
  const t = gd.data[gd.data.length - 1];
  return t.x.length ? [t.x[0], t.y[0]] : null;
}"""
SELECTED_IN_B = """() => {
  const gd = document.querySelector('#latent-map .lm-plot-b');
  let n = 0;
  for (const t of gd.data) if (t.customdata && t.selectedpoints) n += t.selectedpoints.length;
  return n;
}"""


@pytest.fixture(scope="module")
def page(app_url):
    with open_app(app_url, timeout_ms=45_000) as page:
        page.get_by_role("tab", name="Latent map").click()
        page.wait_for_selector("#latent-map .lm-root[data-points]")
        yield page


def _lasso(page, which: str, x0: float, x1: float, y0: float, y1: float) -> None:
    """Drag a closed lasso over the fractions [x0, x1] × [y0, y1] of map ``which``'s plot area."""
    left, top, width, height = page.evaluate(AREA, which)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    page.mouse.move(left + x0 * width, top + y0 * height)
    page.mouse.down()
    for (ax, ay), (bx, by) in zip(corners, corners[1:]):
        for step in range(1, 9):
            f = step / 8
            page.mouse.move(left + (ax + f * (bx - ax)) * width, top + (ay + f * (by - ay)) * height)
    page.mouse.up()


def _src(page, selector: str) -> str | None:
    el = page.query_selector(selector)
    return el.get_attribute("src") if el else None


def test_a_lasso_shows_its_digits_and_the_slider_moves_a_digit(page, artifacts):
    page.locator("#latent-map .lm-drag[value=lasso]").check()
    _lasso(page, "a", 0.05, 0.5, 0.05, 0.95)  # the left half of the map: selection A
    page.wait_for_selector("#map-grid-a img")
    page.wait_for_function("() => document.querySelector('#map-sum-a').innerText.includes('Selection A:')")
    count = int(page.get_attribute("#latent-map .lm-root", "data-selected"))
    assert count > 10 and f"{count:,} digits" in page.inner_text("#map-sum-a")
    # a lasso is no click, though it ends where it began
    assert "Decoded the place" not in page.inner_text("#map-picked")
    assert len(page.input_value("#map-sel-a textarea").split(",")) == count
    page.wait_for_selector("#map-png-a")
    page.wait_for_selector("#map-csv-a")

    page.locator("#latent-map .lm-slot[value=b]").check()
    _lasso(page, "a", 0.6, 0.95, 0.05, 0.95)  # and the right part: selection B (a drag that starts on the
    # first selection's outline would move that outline instead)
    page.wait_for_selector("#map-grid-b img")
    page.wait_for_function("() => document.querySelector('#map-sum-b').innerText.includes('Selection B:')")
    a, b = page.input_value("#map-sel-a textarea"), page.input_value("#map-sel-b textarea")
    assert a and b and not set(a.split(", ")) & set(b.split(", "))  # two regions, two different sets

    page.locator("#map-att-index input").fill("3")
    page.locator("#map-att-go").click()
    page.wait_for_selector("#map-att-strip img")
    page.wait_for_selector("#map-att-one img")
    page.wait_for_function("() => /direction|noise/i.test(document.querySelector('#map-att-note').innerText)")
    before = _src(page, "#map-att-one img")
    page.locator("#map-att-strength input[type=range]").focus()
    page.keyboard.press("Home")  # all the way to −3
    page.wait_for_function(
        "(old) => { const el = document.querySelector('#map-att-one img');"
        " return el && el.getAttribute('src') !== old; }",
        arg=before)
    assert "-3" in page.inner_text("#map-att-one") or "−3" in page.inner_text("#map-att-one")

    # the same digit under a live slider, decoded in the browser while it moves: what the server decodes
    from tests.test_browser_live import TOLERANCE, _drag, _requests
    from vaedemo import inference

    page.wait_for_function("() => +(document.querySelector('#map-att-live .lv-root').dataset.count || 0) > 0")
    sent = _requests(page)
    seen = _drag(page, page.locator("#map-att-live input.lv-slider"), [0.1, 0.9], "#map-att-live")
    assert not sent, f"dragging sent {len(sent)} requests"
    assert all(s["by"] == "browser" for s in seen)
    images = [np.asarray(s["probs"]).reshape(28, 28) for s in seen]
    assert np.abs(images[0] - images[1]).mean() > 1e-3
    checkpoint = page.locator("#map-checkpoint input").input_value().split(" ")[0]
    vector = inference.attribute_vector(checkpoint, a, b)
    for s, image in zip(seen, images):
        expected = inference.apply_attribute(checkpoint, 3, vector, [s["value"]]).images[0]
        assert np.abs(image - expected).max() <= TOLERANCE, s["value"]
    page.locator("#map-att-note").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "map-selection.png"), full_page=True)
    page.locator("#latent-map .lm-slot[value=a]").check()
    page.locator("#latent-map .lm-drag[value=zoom]").check()
    assert not page.errors


def test_compared_maps_link_hover_and_lasso(page, artifacts):
    page.locator("#map-compare input").click()
    page.locator("#map-compare [data-testid=dropdown-option][aria-label*='tiny-ae']").click()
    page.wait_for_function("() => !!document.querySelector('#latent-map .lm-root').dataset.compared")
    page.wait_for_selector("#latent-map .lm-plot-b .nsewdrag")
    assert "same digits on **tiny-ae**" in page.inner_text("#map-note") or "tiny-ae" in page.inner_text("#map-note")

    x, y = page.evaluate(POINT, ["a", 0])
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    page.wait_for_selector("#latent-map .lm-tip:not([hidden])")
    page.wait_for_function("() => document.querySelector('#latent-map .lm-root').dataset.linked !== ''")
    linked = int(page.get_attribute("#latent-map .lm-root", "data-linked"))
    ring = page.evaluate(LINKED, "b")
    assert ring is not None
    # The ring in map b sits on map b's own point for that digit.
    b_points = page.evaluate("""(idx) => {
      const gd = document.querySelector('#latent-map .lm-plot-b');
      const out = [];
      for (const t of gd.data) if (t.customdata) for (let k = 0; k < t.x.length; k++) out.push([t.x[k], t.y[k]]);
      return out;
    }""", linked)
    assert any(abs(px - ring[0]) < 1e-6 and abs(py - ring[1]) < 1e-6 for px, py in b_points)
    page.screenshot(path=str(artifacts / "map-compare-hover.png"), full_page=False)

    page.mouse.move(x + 300, y + 300)
    page.locator("#latent-map .lm-drag[value=lasso]").check()
    _lasso(page, "a", 0.1, 0.6, 0.1, 0.6)
    page.wait_for_function(f"() => ({SELECTED_IN_B})() > 0")
    selected = int(page.get_attribute("#latent-map .lm-root", "data-selected"))
    assert page.evaluate(SELECTED_IN_B) == selected  # the same digits, selected in both maps
    page.wait_for_function("() => document.querySelector('#map-sum-a').innerText.includes('Selection A:')")
    page.screenshot(path=str(artifacts / "map-compare-lasso.png"), full_page=False)
    assert not page.errors
