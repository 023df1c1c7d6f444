// Latent map: plotly.js scatters inside a gr.HTML component (runs as its js_on_load).
//
// Gradio provides `element` (this component's root), `props` (props.value is the JSON map payload built
// by vaedemo/ui/latent_map.py), `trigger(name, data)` (fires a Python event) and `watch`.
// Hovering a point draws its digit from a sprite of the bundled digits; clicking a point fires
// 'point_click', clicking empty space (or anywhere, with the decode toggle on) fires 'space_click', a lasso
// or box fires 'map_select' with the selected digits' numbers. With a compared model, a second map of the
// same digits is drawn beside the first: hovering a digit in one rings it in the other, and a selection in
// one selects the same digits in both. Moving the pointer over either map decodes the place under it with
// that map's model in the panel beside it every frame, in the browser (live_decode.js, prepended to this
// script), or through the server's decode_place where the browser cannot. Served from vaedemo/static;
// plotly.js comes from the plotly package. With "Draw a path" on, dragging over the map draws a path; releasing plays the morph along
// it in the panel (decoded in the browser), and offers it as an animated GIF made in the page.

const root = element.querySelector('.lm-root');
const plotDivs = [element.querySelector('.lm-plot-a'), element.querySelector('.lm-plot-b')];
const tip = element.querySelector('.lm-tip');
const tipCanvas = element.querySelector('.lm-tip canvas');
const tipText = element.querySelector('.lm-tip-text');
const statusLine = element.querySelector('.lm-status');
const decodeToggle = element.querySelector('.lm-decode-toggle');
const pathToggle = element.querySelector('.lm-path-toggle');
const gifLink = element.querySelector('.lm-path-gif');
const PATH_FRAMES = 48; // decodes along a drawn path, evenly spaced by its length on screen
const livePanel = element.querySelector('.lm-live');
const liveCanvas = element.querySelector('.lm-live canvas');
const liveText = element.querySelector('.lm-live-text');
const liveNote = element.querySelector('.lm-live-note');
const PICK_RADIUS = 8; // px: a click this close to a point picks it; farther away decodes the place
const MARKERS = ['picked', 'decoded', 'linked']; // the last three traces of every map, in this order

let payload = null;     // the parsed payload
let views = [];         // one per drawn map: {div, d, which, at: Map(digit number → payload index)}
let sprite = null;      // <img> of the digit sprite
let downAt = null;      // where the mouse went down, to ignore drags
let travel = 0;         // how far it moved while down: a lasso can end where it started
const bound = new Set(); // plot divs whose plotly handlers are bound
let windowBound = false;
// decoding under the cursor, per map ('a', and 'b' for a compared model):
// {key, model, u, mode: 'pending'|'browser'|'server', checkpoint, method}
const lives = { a: null, b: null };
let liveCount = 0;
let drawing = null;     // the path being drawn: {view, pts: [[x, y] in data units]}
let playId = 0;         // the morph now playing (a newer one stops it)

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

function drawThumb(view, i) {
  const s = payload.sprite;
  const idx = view.d.index[i];
  const ctx = tipCanvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, tipCanvas.width, tipCanvas.height);
  if (!sprite || !sprite.complete || !sprite.naturalWidth) {
    if (sprite) sprite.onload = () => { if (tip.dataset.point === String(i)) drawThumb(view, i); };
    return;
  }
  const col = idx % s.cols;
  const row = Math.floor(idx / s.cols);
  ctx.drawImage(sprite, col * s.size, row * s.size, s.size, s.size, 0, 0, tipCanvas.width, tipCanvas.height);
}

function plotOffset(div) {
  // The plot area's top-left corner, relative to the stage.
  const size = div._fullLayout._size;
  return [div.offsetLeft + size.l, div.offsetTop + size.t];
}

function fmt(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function showTip(view, p) {
  const i = p.customdata;
  const d = view.d;
  tip.dataset.point = String(i);
  tip.dataset.index = String(d.index[i]);
  drawThumb(view, i);
  let text = 'digit ' + payload.classes[d.label[i]] + ' · #' + d.index[i];
  if (d.values) text += ' · ' + fmt(d.values[i]);
  tipText.textContent = text;
  const [ox, oy] = plotOffset(view.div);
  const px = ox + p.xaxis.l2p(p.x);
  const py = oy + p.yaxis.l2p(p.y);
  const w = root.clientWidth;
  const left = px + 14 + 130 > w ? px - 14 - 130 : px + 14;
  tip.style.left = Math.max(0, left) + 'px';
  tip.style.top = Math.max(0, py - 70) + 'px';
  tip.hidden = false;
}

function hideTip() {
  tip.hidden = true;
  tip.dataset.point = '';
}

function nearestPoint(view, px, py) {
  // The visible map point nearest to (px, py) in plot-area pixels: [payload index, distance].
  const fl = view.div._fullLayout;
  let best = -1, bestD = Infinity;
  for (const tr of view.div.data) {
    if (!tr.customdata || tr.visible === 'legendonly' || tr.visible === false) continue;
    for (let k = 0; k < tr.x.length; k++) {
      const dd = Math.hypot(fl.xaxis.l2p(tr.x[k]) - px, fl.yaxis.l2p(tr.y[k]) - py);
      if (dd < bestD) { bestD = dd; best = tr.customdata[k]; }
    }
  }
  return [best, bestD];
}

function setMarker(view, name, x, y) {
  const k = view.div.data.length - MARKERS.length + MARKERS.indexOf(name);
  Plotly.restyle(view.div, { x: [x === null ? [] : [x]], y: [y === null ? [] : [y]] }, [k]);
}

function pointTraces(view) {
  // Indices of the traces that hold the map's digits (they carry customdata).
  const out = [];
  view.div.data.forEach((tr, k) => { if (tr.customdata) out.push(k); });
  return out;
}

function buildTraces(view) {
  const d = view.d;
  const traces = [];
  const kind = USE_GL ? 'scattergl' : 'scatter';
  const size = payload.marker_size || 5;
  const faded = { marker: { opacity: 0.12 } };
  if (d.values) {
    // One trace on a continuous scale, with its colour bar.
    traces.push({
      type: kind, mode: 'markers', name: d.colour_title, x: d.x, y: d.y, customdata: d.x.map((_, i) => i),
      hoverinfo: 'none', showlegend: false, unselected: faded,
      marker: {
        size: size, color: d.values, colorscale: 'Viridis', opacity: 0.8, showscale: true,
        colorbar: { title: { text: d.colour_title, side: 'right' }, thickness: 14, len: 0.9 },
      },
    });
  } else {
    for (let c = 0; c < payload.classes.length; c++) {
      const xs = [], ys = [], cd = [];
      for (let i = 0; i < d.x.length; i++) {
        if (d.label[i] === c) { xs.push(d.x[i]); ys.push(d.y[i]); cd.push(i); }
      }
      if (!xs.length) continue;
      traces.push({
        type: kind, mode: 'markers', name: payload.classes[c], x: xs, y: ys, customdata: cd,
        hoverinfo: 'none', unselected: faded,
        marker: { size: size, color: payload.colours[c % payload.colours.length], opacity: 0.75 },
      });
    }
  }
  // Markers go in the same (WebGL) layer as the points, after them, so they are drawn on top.
  if (view.which === 'a' && payload.prior) {
    traces.push({
      type: kind, mode: 'markers', name: "prior's centres", x: payload.prior.x, y: payload.prior.y,
      hoverinfo: 'none',
      marker: { symbol: 'diamond', size: 9, color: 'rgba(60,60,60,0.85)', line: { color: '#fff', width: 1 } },
    });
  }
  if (view.which === 'a' && payload.here) {
    const cloud = payload.cloud;
    if (cloud) {
      // q(z|x): its draws and, for PCA, its 95% ellipse; toggled with "your digit" in the legend.
      traces.push({
        type: kind, mode: 'markers', name: 'q(z|x) draws', x: cloud.x, y: cloud.y,
        legendgroup: 'here', showlegend: false, hoverinfo: 'skip',
        marker: { size: 4, color: 'rgba(0,0,0,0.8)', line: { color: '#fff', width: 0.5 } },
      });
    }
    traces.push({
      type: kind, mode: 'markers', name: 'your digit', x: [payload.here[0]], y: [payload.here[1]],
      legendgroup: 'here', hoverinfo: 'none',
      // smaller over its cloud, which can be narrower than a big star
      marker: { symbol: 'star', size: cloud ? 16 : 24, color: '#111', line: { color: '#ffd400', width: 2 } },
    });
    if (cloud && cloud.ellipse) {
      traces.push({
        // In the points' (WebGL) layer and after the star: an SVG line would be drawn under them.
        type: kind, mode: 'lines', name: 'q(z|x) 95%', x: cloud.ellipse.x, y: cloud.ellipse.y,
        legendgroup: 'here', showlegend: false, hoverinfo: 'skip', line: { color: '#d00', width: 2.5 },
      });
    }
  }
  traces.push({
    type: kind, mode: 'markers', name: 'picked', x: [], y: [], showlegend: false, hoverinfo: 'skip',
    marker: { symbol: 'circle-open', size: 18, color: '#111', line: { width: 3 } },
  });
  traces.push({
    type: kind, mode: 'markers', name: 'decoded', x: [], y: [], showlegend: false, hoverinfo: 'skip',
    marker: { symbol: 'x-thin-open', size: 16, color: '#d00', line: { width: 3, color: '#d00' } },
  });
  traces.push({
    type: kind, mode: 'markers', name: 'linked', x: [], y: [], showlegend: false, hoverinfo: 'skip',
    marker: { symbol: 'circle-open', size: 20, color: '#e0115f', line: { width: 3, color: '#e0115f' } },
  });
  return traces;
}

function other(view) {
  return views.find(v => v !== view) || null;
}

function linkHover(view, i) {
  // Ring the same digit in the other map.
  const w = other(view);
  if (!w) return;
  const idx = view.d.index[i];
  const j = w.at.get(idx);
  if (j === undefined) return;
  setMarker(w, 'linked', w.d.x[j], w.d.y[j]);
  root.dataset.linked = String(idx);
}

function unlinkHover(view) {
  const w = other(view);
  if (w) setMarker(w, 'linked', null, null);
  root.dataset.linked = '';
}

function selectIn(view, indices) {
  // Select the digits numbered `indices` in map `view` (null clears its selection).
  const want = indices === null ? null : new Set(indices);
  const ks = pointTraces(view);
  const sel = ks.map(k => {
    if (want === null) return null;
    const cd = view.div.data[k].customdata;
    const out = [];
    for (let m = 0; m < cd.length; m++) if (want.has(view.d.index[cd[m]])) out.push(m);
    return out;
  });
  Plotly.restyle(view.div, { selectedpoints: sel }, ks);
}

function currentSlot() {
  const r = element.querySelector('.lm-slot:checked');
  return r ? r.value : 'a';
}

function bindView(view) {
  const div = view.div;
  if (bound.has(div)) return;
  bound.add(div);
  div.on('plotly_hover', (ev) => {
    const v = views.find(x => x.div === div);
    const p = ev.points && ev.points[0];
    if (!v || !p || p.customdata === undefined || p.customdata === null || !p.data.customdata) return;
    showTip(v, p);
    linkHover(v, p.customdata);
  });
  div.on('plotly_unhover', () => {
    const v = views.find(x => x.div === div);
    hideTip();
    if (v) unlinkHover(v);
  });
  div.on('plotly_selected', (ev) => {
    const v = views.find(x => x.div === div);
    if (!v || !ev || !ev.points) return;
    const indices = [];
    for (const p of ev.points) {
      if (p.data && p.data.customdata && p.customdata !== undefined) indices.push(v.d.index[p.customdata]);
    }
    const w = other(v);
    if (w) selectIn(w, indices);
    if (!indices.length) return;
    const slot = currentSlot();
    root.dataset.selected = String(indices.length);
    setStatus('Selected ' + indices.length + ' digits into ' + slot.toUpperCase() + ': their grid is under the map.');
    trigger('map_select', { slot: slot, indices: indices, which: v.which });
  });
  div.on('plotly_deselect', () => {
    const v = views.find(x => x.div === div);
    const w = v && other(v);
    if (w) selectIn(w, null);
  });
  div.addEventListener('mouseleave', hideTip);
  div.addEventListener('pointermove', onLiveMove, true);
  div.addEventListener('pointerdown', onPathDown, true);
  div.addEventListener('pointermove', onPathMove, true);
  // plotly covers the page while the button is down, so the browser's 'click' never reaches the
  // plot, and its own plotly_click can come late or name a stale hovered point: watch the press
  // and the release, and find the clicked point ourselves.
  div.addEventListener('pointerdown', (ev) => { downAt = [ev.clientX, ev.clientY]; travel = 0; }, true);
  if (window.ResizeObserver) {
    // The map may be drawn while its tab is hidden (zero width); resize once it shows.
    new ResizeObserver(() => { if (payload && div.offsetWidth > 0 && div._fullLayout) Plotly.Plots.resize(div); })
      .observe(div);
  }
}

const LIVE_NOTES = { browser: 'decoded in your browser',
                     server: 'Decoded on the server: this browser cannot run the model itself.' };

function setupLive(p) {
  // Start the decoder of each drawn map's model (its ONNX file and the WASM runtime load once, cached).
  setupLiveFor('a', p.live, p);
  setupLiveFor('b', p.compare && p.compare.live, p.compare);
  livePanel.hidden = !lives.a && !lives.b;
}

function setupLiveFor(which, spec, part) {
  const flag = which === 'a' ? 'live' : 'liveB'; // root.dataset.live / liveB: pending, browser or server
  if (!spec || !window.vaedemoLive) {
    lives[which] = null;
    delete root.dataset[flag];
    return;
  }
  const key = spec.model.name + '/' + spec.inverse.method + '/' + spec.model.version;
  if (lives[which] && lives[which].key === key) return;
  const mine = { key: key, model: spec.model, u: vaedemoLive.unpack(spec.inverse), mode: 'pending',
                 checkpoint: part.checkpoint, method: part.method, which: which };
  lives[which] = mine;
  root.dataset[flag] = 'pending';
  const arrived = performance.now();
  if (which === 'a') liveNote.textContent = '';
  vaedemoLive.session(spec.model, 'decoder').then(() => {
    mine.mode = 'browser';
  }).catch((e) => {
    mine.mode = 'server';
    console.info('vaedemo: decoding ' + mine.checkpoint + ' on the server (' + (e && e.message ? e.message : e) + ')');
  }).finally(() => {
    if (lives[which] !== mine) return;
    // the wait a visitor sees: from the first map's arrival until its panel decodes (read by the benchmark)
    if (which === 'a' && vaedemoLive.stats.mapFirstUse === undefined) vaedemoLive.stats.mapFirstUse = performance.now() - arrived;
    root.dataset[flag] = mine.mode;
    // Said once, quietly: everything still works, a little slower.
    if (which === 'a' || !lives.a) liveNote.textContent = LIVE_NOTES[mine.mode];
    livePump.kick();
  });
}

// a place waits while its model's decoder is still loading (setupLiveFor kicks it when ready)
const livePump = window.vaedemoLive
  ? vaedemoLive.pump(stepLive, (w) => !!lives[w.which] && lives[w.which].mode !== 'pending')
  : { ask() {}, kick() {} };

async function stepLive({ which, x, y }) {
  const mine = lives[which];
  const start = performance.now();
  try {
    let probs, label = null, code = null;
    if (mine.mode === 'browser') {
      const c = vaedemoLive.placeToCode(mine.u, x, y);
      label = c.label;
      code = c.z;
      probs = await vaedemoLive.decode(mine.model, c.z, 1, label === null ? null : [label]);
    } else {
      probs = await server.decode_place({ checkpoint: mine.checkpoint, method: mine.method, x: x, y: y });
    }
    if (lives[which] !== mine) return;
    vaedemoLive.draw(liveCanvas, probs, 0);
    if (mine.mode === 'browser') vaedemoLive.stats.frames.push(performance.now() - start);
    livePanel._probs = probs;
    livePanel._code = code; // the code decoded (browser only), read by the API-parity test
    liveCount += 1;
    root.dataset.liveX = String(x);
    root.dataset.liveY = String(y);
    root.dataset.liveCount = String(liveCount);
    root.dataset.liveBy = mine.mode;
    root.dataset.liveWhich = which;
    root.dataset.liveCheckpoint = mine.checkpoint;
    liveText.textContent = (lives.b ? mine.checkpoint + ' at ' : '') + '(' + fmt(x) + ', ' + fmt(y) + ')' +
      (label !== null ? ' · as a ' + label : '');
    liveNote.textContent = LIVE_NOTES[mine.mode];
  } catch (e) {
    liveText.textContent = 'Could not decode this place.';
  }
}

function onLiveMove(ev) {
  // The pointer over either map: decode that map's place with that map's model.
  if (ev.buttons) return;
  for (const view of views) {
    if (!lives[view.which]) continue;
    const xy = dataXY(view, ev);
    if (xy) { livePump.ask({ which: view.which, x: xy[0], y: xy[1] }); return; }
  }
}

// ---- drawing a path and playing the morph along it

function dataXY(view, ev) {
  const drag = view.div.querySelector('.nsewdrag');
  if (!drag) return null;
  const r = drag.getBoundingClientRect();
  if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) return null;
  const fl = view.div._fullLayout;
  return [fl.xaxis.p2l(ev.clientX - r.left), fl.yaxis.p2l(ev.clientY - r.top)];
}

function showPath(view, pts) {
  const shapes = pts.length > 1 ? [{
    type: 'path', xref: 'x', yref: 'y', line: { color: '#d00', width: 3 },
    path: 'M' + pts.map(q => q[0] + ',' + q[1]).join(' L'),
  }] : [];
  Plotly.relayout(view.div, { shapes: shapes });
}

function resample(view, pts, n) {
  // n points evenly spaced along the path's length in screen pixels (the axes' units can differ a lot)
  const fl = view.div._fullLayout;
  const px = pts.map(q => [fl.xaxis.l2p(q[0]), fl.yaxis.l2p(q[1])]);
  const cum = [0];
  for (let i = 1; i < px.length; i++) cum.push(cum[i - 1] + Math.hypot(px[i][0] - px[i - 1][0], px[i][1] - px[i - 1][1]));
  const total = cum[cum.length - 1];
  const out = [];
  let j = 0;
  for (let k = 0; k < n; k++) {
    const at = total * k / (n - 1);
    while (j < cum.length - 2 && cum[j + 1] < at) j++;
    const span = cum[j + 1] - cum[j];
    const f = span > 0 ? (at - cum[j]) / span : 0;
    out.push([pts[j][0] + f * (pts[j + 1][0] - pts[j][0]), pts[j][1] + f * (pts[j + 1][1] - pts[j][1])]);
  }
  return out;
}

async function playPath(view, pts) {
  const id = ++playId;
  const mine = lives[view.which];
  const frames = [];
  gifLink.hidden = true;
  root.dataset.pathFrames = '0';
  for (const [x, y] of resample(view, pts, PATH_FRAMES)) {
    if (id !== playId || lives[view.which] !== mine) return;
    const c = vaedemoLive.placeToCode(mine.u, x, y);
    const probs = await vaedemoLive.decode(mine.model, c.z, 1, c.label === null ? null : [c.label]);
    vaedemoLive.draw(liveCanvas, probs, 0);
    setMarker(view, 'decoded', x, y);
    liveText.textContent = 'along your path: ' + (frames.length + 1) + ' / ' + PATH_FRAMES;
    frames.push(Float32Array.from(probs));
    root.dataset.pathFrames = String(frames.length);
    await new Promise(r => requestAnimationFrame(r));
  }
  if (gifLink.href && gifLink.href.startsWith('blob:')) URL.revokeObjectURL(gifLink.href);
  gifLink.href = URL.createObjectURL(new Blob([gifBytes(frames, 4, 6)], { type: 'image/gif' }));
  gifLink.hidden = false;
  root.dataset.pathGif = 'ready';
}

function gifBytes(frames, scale, delayCs) {
  // An animated, looping grayscale GIF of 28x28 probability frames, each pixel scaled up `scale` times.
  // LZW is written "uncompressed": 9-bit literal codes with a clear code every 250, so no table is built.
  const W = 28 * scale, H = 28 * scale;
  const bytes = [];
  const put = (...b) => { for (const v of b) bytes.push(v); };
  const le16 = v => put(v & 255, (v >> 8) & 255);
  for (const ch of 'GIF89a') put(ch.charCodeAt(0));
  le16(W); le16(H); put(0xF7, 0, 0); // a global colour table of 256 entries
  for (let i = 0; i < 256; i++) put(i, i, i);
  put(0x21, 0xFF, 0x0B); for (const ch of 'NETSCAPE2.0') put(ch.charCodeAt(0)); put(3, 1, 0, 0, 0); // loop
  for (const f of frames) {
    put(0x21, 0xF9, 4, 0); le16(delayCs); put(0, 0);
    put(0x2C); le16(0); le16(0); le16(W); le16(H); put(0);
    put(8); // LZW minimum code size
    const data = [];
    let acc = 0, nbits = 0, run = 0;
    const code = (c) => { acc |= c << nbits; nbits += 9; while (nbits >= 8) { data.push(acc & 255); acc >>= 8; nbits -= 8; } };
    code(256);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = f[Math.floor(y / scale) * 28 + Math.floor(x / scale)];
        code(Math.max(0, Math.min(255, Math.round(v * 255))));
        if (++run === 250) { code(256); run = 0; }
      }
    }
    code(257);
    if (nbits > 0) data.push(acc & 255);
    for (let i = 0; i < data.length; i += 255) {
      const part = data.slice(i, i + 255);
      put(part.length, ...part);
    }
    put(0);
  }
  put(0x3B);
  return new Uint8Array(bytes);
}

function onPathDown(ev) {
  const view = views.find(v => v.div.contains(ev.target));
  if (!pathToggle.checked || !view) return;
  const mine = lives[view.which];
  if (!mine || mine.mode !== 'browser') {
    setStatus('Drawing a path needs the model running in this browser; click places to decode them instead.');
    return;
  }
  const xy = dataXY(view, ev);
  if (!xy) return;
  playId++; // stop a morph still playing
  drawing = { view: view, pts: [xy] };
  ev.preventDefault();
  ev.stopPropagation();
}

function onPathMove(ev) {
  if (!drawing) return;
  const xy = dataXY(drawing.view, ev);
  if (!xy) return;
  drawing.pts.push(xy);
  const d = drawing;
  if (!d.queued) {
    d.queued = true;
    requestAnimationFrame(() => { d.queued = false; showPath(d.view, d.pts); });
  }
}

function onPathUp() {
  if (!drawing) return;
  const d = drawing;
  drawing = null;
  if (d.pts.length < 2) return;
  showPath(d.view, d.pts);
  setStatus('Playing the morph along your path (' + PATH_FRAMES + ' decodes in your browser).');
  playPath(d.view, d.pts);
}

pathToggle.addEventListener('change', () => {
  root.classList.toggle('lm-pathing', pathToggle.checked);
  for (const v of views) Plotly.relayout(v.div, { dragmode: pathToggle.checked ? false : dragMode() });
});

function onRelease(ev) {
  if (pathToggle.checked) {
    downAt = null;
    onPathUp();
    return;
  }
  if (!payload || !downAt || !document.body.contains(root)) return;
  const moved = Math.max(travel, Math.hypot(ev.clientX - downAt[0], ev.clientY - downAt[1]));
  downAt = null;
  if (moved > 4) return; // that was a drag (zoom, pan, lasso), not a click
  for (const view of views) {
    const drag = view.div.querySelector('.nsewdrag');
    if (!drag) continue;
    const r = drag.getBoundingClientRect();
    if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) continue;
    const px = ev.clientX - r.left, py = ev.clientY - r.top;
    const [i, dist] = nearestPoint(view, px, py);
    const d = view.d;
    if (!decodeToggle.checked && i >= 0 && dist <= PICK_RADIUS) {
      setMarker(view, 'picked', d.x[i], d.y[i]);
      setStatus('Clicked digit #' + d.index[i] + ' (label ' + payload.classes[d.label[i]] + ') on ' + d.checkpoint +
                ': it and its reconstruction are on the right.');
      trigger('point_click', { index: d.index[i], label: d.label[i], x: d.x[i], y: d.y[i], which: view.which });
      return;
    }
    const fl = view.div._fullLayout;
    const x = fl.xaxis.p2l(px), y = fl.yaxis.p2l(py);
    setMarker(view, 'decoded', x, y);
    setStatus('Clicked the place (' + x.toFixed(2) + ', ' + y.toFixed(2) + ') on ' + d.checkpoint +
              ', marked ×: its decode is on the right.');
    trigger('space_click', { x: x, y: y, which: view.which });
    return;
  }
}

function dragMode() {
  const r = element.querySelector('.lm-drag:checked');
  return r ? r.value : 'zoom';
}

function layoutFor(view) {
  const d = view.d;
  return {
    margin: { l: 50, r: 10, t: view.which === 'b' || payload.compare ? 28 : 10, b: 45 },
    title: payload.compare ? { text: d.checkpoint, font: { size: 13 }, x: 0.01, xanchor: 'left', y: 0.995 } : undefined,
    hovermode: 'closest',
    hoverdistance: 10,
    dragmode: pathToggle.checked ? false : dragMode(),
    xaxis: { title: { text: d.axis[0] }, zeroline: false, showgrid: true, gridcolor: '#eee' },
    yaxis: { title: { text: d.axis[1] }, zeroline: false, showgrid: true, gridcolor: '#eee' },
    // With a colour bar at the right, the few legend entries left (prior, your digit) go above the plot.
    legend: d.values ? { orientation: 'h', x: 0, y: 1.01, yanchor: 'bottom', itemsizing: 'constant' }
      : { title: { text: 'label' }, itemsizing: 'constant', y: 0.9 },
    showlegend: view.which === 'a',
    plot_bgcolor: '#fff',
    paper_bgcolor: 'rgba(0,0,0,0)',
    uirevision: d.checkpoint + '/' + d.method + '/' + d.x.length,
  };
}

function draw() {
  let p = null;
  try {
    p = props.value ? JSON.parse(props.value) : null;
  } catch (e) {
    p = null;
  }
  if (!p || !p.x) {
    payload = null;
    views = [];
    root.classList.add('lm-empty');
    setStatus('Pick a model and press "Draw map".');
    return;
  }
  if (typeof Plotly === 'undefined') {
    setStatus('The plotting library did not load; reload the page.');
    return;
  }
  payload = p;
  root.classList.remove('lm-empty');
  root.classList.toggle('lm-compare', !!p.compare);
  loadSprite(p.sprite);
  setupLive(p);
  hideTip();
  const parts = [['a', p]];
  if (p.compare) parts.push(['b', p.compare]);
  else if (plotDivs[1]._fullLayout) Plotly.purge(plotDivs[1]);
  views = parts.map(([which, d], n) => ({ div: plotDivs[n], d: d, which: which,
                                          at: new Map(d.index.map((idx, i) => [idx, i])) }));
  const config = {
    responsive: true, displaylogo: false, scrollZoom: true, modeBarButtonsToRemove: ['toImage'],
  };
  Promise.all(views.map(v => Plotly.react(v.div, buildTraces(v), layoutFor(v), config).then(() => bindView(v))))
    .then(() => {
      if (!windowBound) {
        windowBound = true;
        window.addEventListener('pointerup', onRelease, true);
        window.addEventListener('pointermove', (ev) => {
          if (downAt) travel = Math.max(travel, Math.hypot(ev.clientX - downAt[0], ev.clientY - downAt[1]));
        }, true);
      }
      root.dataset.points = String(p.x.length);
      root.dataset.checkpoint = p.checkpoint;
      root.dataset.method = p.method;
      root.dataset.compared = p.compare ? String(p.compare.x.length) : '';
      setStatus(p.caption || '');
    });
}

element.querySelectorAll('.lm-drag').forEach(r => r.addEventListener('change', () => {
  for (const v of views) Plotly.relayout(v.div, { dragmode: pathToggle.checked ? false : dragMode() });
}));

watch('value', draw);
draw();
