// Latent map: a plotly.js scatter inside a gr.HTML component (runs as its js_on_load).
//
// Gradio provides `element` (this component's root), `props` (props.value is the JSON map
// payload built by vaedemo/ui.py), `trigger(name, data)` (fires a Python event) and `watch`.
// Hovering a point draws its digit from a sprite of the bundled digits; clicking a point fires
// 'point_click', clicking empty space (or anywhere, with the decode toggle on) fires 'space_click'.
// Served from vaedemo/static and read by vaedemo/ui.py; plotly.js comes from the plotly package.

const plotDiv = element.querySelector('.lm-plot');
const tip = element.querySelector('.lm-tip');
const tipCanvas = element.querySelector('.lm-tip canvas');
const tipText = element.querySelector('.lm-tip-text');
const statusLine = element.querySelector('.lm-status');
const decodeToggle = element.querySelector('.lm-decode-toggle');
const PICK_RADIUS = 8; // px: a click this close to a point picks it; farther away decodes the place

let data = null;        // the parsed payload
let sprite = null;      // <img> of the digit sprite
let downAt = null;      // where the mouse went down, to ignore drags
let handlersBound = false;

function webglAvailable() {
  try {
    const c = document.createElement('canvas');
    return !!(c.getContext('webgl2') || c.getContext('webgl'));
  } catch (e) {
    return false;
  }
}
const USE_GL = webglAvailable();

function setStatus(text) {
  statusLine.textContent = text;
}

function loadSprite(spec) {
  if (!spec || !spec.url) return;
  if (sprite && sprite.dataset.url === spec.url) return;
  sprite = new Image();
  sprite.dataset.url = spec.url;
  sprite.src = spec.url;
}

function drawThumb(i) {
  const s = data.sprite;
  const idx = data.index[i];
  const ctx = tipCanvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, tipCanvas.width, tipCanvas.height);
  if (!sprite || !sprite.complete || !sprite.naturalWidth) {
    if (sprite) sprite.onload = () => { if (tip.dataset.point === String(i)) drawThumb(i); };
    return;
  }
  const col = idx % s.cols;
  const row = Math.floor(idx / s.cols);
  ctx.drawImage(sprite, col * s.size, row * s.size, s.size, s.size, 0, 0, tipCanvas.width, tipCanvas.height);
}

function plotOffset() {
  // The plot area's top-left corner, relative to plotDiv.
  const size = plotDiv._fullLayout._size;
  return [size.l, size.t];
}

function showTip(p) {
  const i = p.customdata;
  tip.dataset.point = String(i);
  tip.dataset.index = String(data.index[i]);
  drawThumb(i);
  tipText.textContent = 'digit ' + data.classes[data.label[i]] + ' · #' + data.index[i];
  const [ox, oy] = plotOffset();
  const px = ox + p.xaxis.l2p(p.x);
  const py = oy + p.yaxis.l2p(p.y);
  const w = plotDiv.clientWidth;
  const left = px + 14 + 130 > w ? px - 14 - 130 : px + 14;
  tip.style.left = Math.max(0, left) + 'px';
  tip.style.top = Math.max(0, py - 70) + 'px';
  tip.hidden = false;
}

function hideTip() {
  tip.hidden = true;
  tip.dataset.point = '';
}

function nearestPoint(px, py) {
  // The visible map point nearest to (px, py) in plot-area pixels: [payload index, distance].
  const fl = plotDiv._fullLayout;
  let best = -1, bestD = Infinity;
  for (const tr of plotDiv.data) {
    if (!tr.customdata || tr.visible === 'legendonly' || tr.visible === false) continue;
    for (let k = 0; k < tr.x.length; k++) {
      const d = Math.hypot(fl.xaxis.l2p(tr.x[k]) - px, fl.yaxis.l2p(tr.y[k]) - py);
      if (d < bestD) { bestD = d; best = tr.customdata[k]; }
    }
  }
  return [best, bestD];
}

function setMarker(name, x, y) {
  // Traces 'picked' and 'decoded' are the last two; move the one asked for.
  const k = name === 'picked' ? plotDiv.data.length - 2 : plotDiv.data.length - 1;
  Plotly.restyle(plotDiv, { x: [[x]], y: [[y]] }, [k]);
}

function buildTraces(d) {
  const traces = [];
  const kind = USE_GL ? 'scattergl' : 'scatter';
  for (let c = 0; c < d.classes.length; c++) {
    const xs = [], ys = [], cd = [];
    for (let i = 0; i < d.x.length; i++) {
      if (d.label[i] === c) { xs.push(d.x[i]); ys.push(d.y[i]); cd.push(i); }
    }
    if (!xs.length) continue;
    traces.push({
      type: kind, mode: 'markers', name: d.classes[c], x: xs, y: ys, customdata: cd,
      hoverinfo: 'none',
      marker: { size: d.marker_size || 5, color: d.colours[c % d.colours.length], opacity: 0.75 },
    });
  }
  // Markers go in the same (WebGL) layer as the points, after them, so they are drawn on top.
  if (d.prior) {
    traces.push({
      type: kind, mode: 'markers', name: "prior's centres", x: d.prior.x, y: d.prior.y,
      hoverinfo: 'none',
      marker: { symbol: 'diamond', size: 9, color: 'rgba(60,60,60,0.85)', line: { color: '#fff', width: 1 } },
    });
  }
  if (d.here) {
    traces.push({
      type: kind, mode: 'markers', name: 'your digit', x: [d.here[0]], y: [d.here[1]],
      hoverinfo: 'none',
      marker: { symbol: 'star', size: 24, color: '#111', line: { color: '#ffd400', width: 2 } },
    });
  }
  traces.push({
    type: kind, mode: 'markers', name: 'picked', x: [], y: [], showlegend: false, hoverinfo: 'skip',
    marker: { symbol: 'circle-open', size: 18, color: '#111', line: { width: 3 } },
  });
  traces.push({
    type: kind, mode: 'markers', name: 'decoded', x: [], y: [], showlegend: false, hoverinfo: 'skip',
    marker: { symbol: 'x-thin-open', size: 16, color: '#d00', line: { width: 3, color: '#d00' } },
  });
  return traces;
}

function bindHandlers() {
  if (handlersBound) return;
  handlersBound = true;
  plotDiv.on('plotly_hover', (ev) => {
    const p = ev.points && ev.points[0];
    if (!data || !p || p.customdata === undefined || p.customdata === null) return;
    showTip(p);
  });
  plotDiv.on('plotly_unhover', hideTip);
  // plotly covers the page while the button is down, so the browser's 'click' never reaches the
  // plot, and its own plotly_click can come late or name a stale hovered point: watch the press
  // and the release, and find the clicked point ourselves.
  plotDiv.addEventListener('pointerdown', (ev) => { downAt = [ev.clientX, ev.clientY]; }, true);
  const onRelease = (ev) => {
    if (!data || !downAt || !document.body.contains(plotDiv)) return;
    const moved = Math.hypot(ev.clientX - downAt[0], ev.clientY - downAt[1]);
    downAt = null;
    if (moved > 4) return; // that was a drag (zoom or pan), not a click
    const drag = plotDiv.querySelector('.nsewdrag');
    if (!drag) return;
    const r = drag.getBoundingClientRect();
    if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) return;
    const px = ev.clientX - r.left, py = ev.clientY - r.top;
    const [i, dist] = nearestPoint(px, py);
    if (!decodeToggle.checked && i >= 0 && dist <= PICK_RADIUS) {
      setMarker('picked', data.x[i], data.y[i]);
      setStatus('Clicked digit #' + data.index[i] + ' (label ' + data.classes[data.label[i]] + '): it and its reconstruction are on the right.');
      trigger('point_click', { index: data.index[i], label: data.label[i], x: data.x[i], y: data.y[i] });
      return;
    }
    const fl = plotDiv._fullLayout;
    const x = fl.xaxis.p2l(px), y = fl.yaxis.p2l(py);
    setMarker('decoded', x, y);
    setStatus('Clicked the place (' + x.toFixed(2) + ', ' + y.toFixed(2) + '), marked ×: its decode is on the right.');
    trigger('space_click', { x: x, y: y });
  };
  window.addEventListener('pointerup', onRelease, true);
  plotDiv.addEventListener('mouseleave', hideTip);
  if (window.ResizeObserver) {
    // The map may be drawn while its tab is hidden (zero width); resize once it shows.
    new ResizeObserver(() => { if (data && plotDiv.offsetWidth > 0) Plotly.Plots.resize(plotDiv); }).observe(plotDiv);
  }
}

function draw() {
  let d = null;
  try {
    d = props.value ? JSON.parse(props.value) : null;
  } catch (e) {
    d = null;
  }
  if (!d || !d.x) {
    data = null;
    element.querySelector('.lm-root').classList.add('lm-empty');
    setStatus('Pick a model and press "Draw map".');
    return;
  }
  if (typeof Plotly === 'undefined') {
    setStatus('The plotting library did not load; reload the page.');
    return;
  }
  data = d;
  element.querySelector('.lm-root').classList.remove('lm-empty');
  loadSprite(d.sprite);
  hideTip();
  const layout = {
    margin: { l: 50, r: 10, t: 10, b: 45 },
    hovermode: 'closest',
    hoverdistance: 10,
    dragmode: 'zoom',
    xaxis: { title: { text: d.axis[0] }, zeroline: false, showgrid: true, gridcolor: '#eee' },
    yaxis: { title: { text: d.axis[1] }, zeroline: false, showgrid: true, gridcolor: '#eee' },
    legend: { title: { text: 'label' }, itemsizing: 'constant', y: 0.9 },
    plot_bgcolor: '#fff',
    paper_bgcolor: 'rgba(0,0,0,0)',
    uirevision: d.checkpoint + '/' + d.method + '/' + d.x.length,
  };
  const config = {
    responsive: true, displaylogo: false, scrollZoom: true,
    modeBarButtonsToRemove: ['select2d', 'lasso2d', 'toImage'],
  };
  Plotly.react(plotDiv, buildTraces(d), layout, config).then(() => {
    bindHandlers();
    element.querySelector('.lm-root').dataset.points = String(d.x.length);
    setStatus(d.caption || '');
  });
}

watch('value', draw);
draw();
