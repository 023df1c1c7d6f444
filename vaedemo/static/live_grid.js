// Live decoding on the Sample tab (runs as a gr.HTML js_on_load, after live_decode.js):
// - kind 'samples': the prior draws of the grid on the left, z(T) = centre + T * offset (vaedemo/inference/
//   browser.py sample_draws), re-decoded while the Temperature slider (#sample-temperature) moves: the same
//   draws, only their spread changes;
// - kind 'traverse': one slider per latent dimension (most used first, up to 16) around a digit's code,
//   re-decoded while a slider is dragged;
// - kind 'interpolate': a scrubber t in [0, 1] along the straight (lerp) and the spherical (slerp) path between
//   two codes, both decoded at t (explore.py's slerp, mirrored);
// - kind 'attribute' (Latent map): a strength slider s in [-3, 3] moving a digit's code along an attribute vector,
//   z = code + s * direction (inference/selection.py apply_attribute), re-decoded while it is dragged.
// props.value is the JSON payload from vaedemo/ui/sample.py. Decoding runs in the browser (onnxruntime-web);
// where it cannot, the server's decode_codes answers, and the widget says so once.

const root = element.querySelector('.lv-root');
const canvas = element.querySelector('.lv-canvas');
const title = element.querySelector('.lv-title');
const text = element.querySelector('.lv-text');
const note = element.querySelector('.lv-note');
const sliderBox = element.querySelector('.lv-sliders');
const CELL = 56; // px per digit in the grid (28 x 2)
const GAP = 2;

let p = null;       // the payload, with its arrays unpacked
let mode = 'pending';
let done = 0;
let tempInput = null;

function temperature() {
  const v = tempInput ? parseFloat(tempInput.value) : NaN;
  return Number.isFinite(v) && v > 0 ? v : p.temperature;
}

function currentCodes() {
  // (Float32Array n*D, n, labels or null) for what the widget shows now
  const D = p.model.latent_dim;
  if (p.kind === 'samples') {
    const T = temperature();
    const z = new Float32Array(p.count * D);
    for (let i = 0; i < z.length; i++) z[i] = p.centre[i] + T * p.offset[i];
    return { z: z, n: p.count, labels: p.labels, what: 'temperature ' + T.toFixed(2) };
  }
  if (p.kind === 'interpolate') {
    const t = parseFloat(sliderBox.querySelector('input[type=range]').value);
    const z = new Float32Array(2 * D);
    const z0 = p.ends.subarray(0, D), z1 = p.ends.subarray(D, 2 * D);
    let n0 = 0, n1 = 0, dot = 0;
    for (let d = 0; d < D; d++) { n0 += z0[d] * z0[d]; n1 += z1[d] * z1[d]; dot += z0[d] * z1[d]; }
    n0 = Math.sqrt(n0); n1 = Math.sqrt(n1);
    // slerp (Shoemake 1985), a straight line when the codes are (anti)parallel or one is zero, as explore.slerp
    const omega = n0 < 1e-12 || n1 < 1e-12 ? 0 : Math.acos(Math.max(-1, Math.min(1, dot / (n0 * n1))));
    const straight = n0 < 1e-12 || n1 < 1e-12 || Math.sin(omega) < 1e-6;
    const a = straight ? 1 - t : Math.sin((1 - t) * omega) / Math.sin(omega);
    const b = straight ? t : Math.sin(t * omega) / Math.sin(omega);
    for (let d = 0; d < D; d++) {
      z[d] = (1 - t) * z0[d] + t * z1[d];
      z[D + d] = a * z0[d] + b * z1[d];
    }
    const lab = p.label === null ? null : [p.label, p.label];
    return { z: z, n: 2, labels: lab, what: 't = ' + t.toFixed(2) + ': lerp (left), slerp (right)' };
  }
  if (p.kind === 'attribute') {
    const s = parseFloat(sliderBox.querySelector('input[type=range]').value);
    const z = new Float32Array(D);
    for (let d = 0; d < D; d++) z[d] = p.code[d] + s * p.direction[d];
    return { z: z, n: 1, labels: p.label === null ? null : [p.label], what: 'strength ' + (s > 0 ? '+' : '') + s.toFixed(2) };
  }
  const z = Float32Array.from(p.code);
  const parts = [];
  sliderBox.querySelectorAll('input[type=range]').forEach((s) => {
    const d = +s.dataset.dim, v = parseFloat(s.value);
    z[d] += v * p.unit[d];
    if (v !== 0) parts.push('z' + d + ' ' + (v > 0 ? '+' : '') + v.toFixed(2) + 'σ');
  });
  return { z: z, n: 1, labels: p.label === null ? null : [p.label], what: parts.join(', ') || "the digit's own code" };
}

function drawGrid(probs, n) {
  const cols = p.kind === 'samples' ? p.ncols : p.kind === 'interpolate' ? 2 : 1;
  const rows = Math.ceil(n / cols);
  const cell = p.kind === 'samples' ? CELL : 168;
  const w = cols * cell + (cols - 1) * GAP, h = rows * cell + (rows - 1) * GAP;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  const img = ctx.createImageData(28, 28);
  const tile = document.createElement('canvas');
  tile.width = tile.height = 28;
  const tctx = tile.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 784; k++) {
      const v = Math.max(0, Math.min(255, Math.round(probs[i * 784 + k] * 255)));
      img.data[4 * k] = img.data[4 * k + 1] = img.data[4 * k + 2] = v;
      img.data[4 * k + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    ctx.drawImage(tile, (i % cols) * (cell + GAP), Math.floor(i / cols) * (cell + GAP), cell, cell);
  }
}

async function step() {
  const mine = p;
  const start = performance.now();
  try {
    const c = currentCodes();
    let probs;
    if (mode === 'browser') {
      probs = await vaedemoLive.decode(mine.model, c.z, c.n, c.labels);
    } else {
      const rows = [];
      for (let i = 0; i < c.n; i++) rows.push(Array.from(c.z.subarray(i * mine.model.latent_dim, (i + 1) * mine.model.latent_dim)));
      const got = await server.decode_codes({ checkpoint: mine.checkpoint, z: rows, labels: c.labels ? Array.from(c.labels) : null });
      probs = Float32Array.from(got.flat());
    }
    if (p !== mine) return;
    drawGrid(probs, c.n);
    if (mode === 'browser') vaedemoLive.stats.frames.push(performance.now() - start);
    root._probs = probs;
    done += 1;
    root.dataset.count = String(done);
    root.dataset.by = mode;
    root.dataset.state = c.what;
    text.textContent = (p.kind === 'samples' ? 'The same ' + c.n + ' draws at ' : '') + c.what + '.';
  } catch (e) {
    text.textContent = 'Could not decode: ' + (e && e.message ? e.message : e);
  }
}

const { ask } = vaedemoLive.pump(step, () => p && mode !== 'pending'); // the latest state is read when a step starts

function addSlider(label, min, max, dim, show) {
  const name = document.createElement('span');
  name.textContent = label;
  const s = document.createElement('input');
  s.type = 'range';
  s.min = String(min); s.max = String(max); s.step = '0.01'; s.value = String(Math.max(min, 0));
  s.dataset.dim = String(dim);
  s.className = 'lv-slider';
  const val = document.createElement('span');
  val.textContent = show(parseFloat(s.value));
  s.addEventListener('input', () => { val.textContent = show(parseFloat(s.value)); ask(); });
  sliderBox.append(name, s, val);
  return s;
}

function buildSliders() {
  sliderBox.innerHTML = '';
  if (p.kind === 'interpolate') {
    addSlider('t', 0, 1, -1, v => v.toFixed(2));
    return;
  }
  if (p.kind === 'attribute') {
    addSlider('strength', -3, 3, -1, v => (v > 0 ? '+' : '') + v.toFixed(2));
    return;
  }
  if (p.kind !== 'traverse') return;
  for (const d of p.dims) {
    const s = addSlider('z' + d, -p.span, p.span, d, v => v.toFixed(2) + 'σ');
    s.addEventListener('dblclick', () => { s.value = '0'; s.dispatchEvent(new Event('input')); });
  }
}

function hookTemperature() {
  const found = document.querySelector('#sample-temperature input[type=range]');
  if (found === tempInput) return;
  tempInput = found;
  if (tempInput) tempInput.addEventListener('input', () => { if (p && p.kind === 'samples') ask(); });
}

function setup() {
  let q = null;
  try { q = props.value ? JSON.parse(props.value) : null; } catch (e) { q = null; }
  if (!q || !q.model || !window.vaedemoLive) { p = null; root.hidden = true; return; }
  const L = vaedemoLive;
  if (q.kind === 'samples') {
    q.centre = L.f32(q.centre); q.offset = L.f32(q.offset);
  } else if (q.kind === 'interpolate') {
    q.ends = L.f32(q.ends);
  } else if (q.kind === 'attribute') {
    q.code = L.f32(q.code); q.direction = L.f32(q.direction);
  } else {
    q.code = L.f32(q.code); q.unit = L.f32(q.unit);
  }
  if (q.labels) q.labels = Array.from(atob(q.labels), ch => ch.charCodeAt(0));
  p = q;
  root.hidden = false;
  title.textContent = q.kind === 'samples'
    ? 'Live: move the Temperature slider and these draws re-decode as it moves'
    : q.kind === 'interpolate' ? 'Live: scrub along both paths, lerp (left) and slerp (right)'
      : q.kind === 'attribute' ? 'Live: drag the strength and the digit moves along A − B as you drag'
      : 'Live: drag a slider to move that dimension (±' + q.span + 'σ); double-click one to reset it';
  buildSliders();
  hookTemperature();
  mode = 'pending';
  root.dataset.by = '';
  L.session(q.model, 'decoder').then(() => {
    if (p !== q) return;
    mode = 'browser';
    note.textContent = 'Decoded in your browser.';
  }).catch((e) => {
    if (p !== q) return;
    mode = 'server';
    note.textContent = 'Decoded on the server: this browser cannot run the model itself.';
    console.info('vaedemo: live decoding on the server (' + (e && e.message ? e.message : e) + ')');
  }).finally(() => ask());
}

watch('value', setup);
setup();
