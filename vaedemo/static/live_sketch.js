// Reconstruct while drawing (runs as a gr.HTML js_on_load on the Reconstruct tab, after live_decode.js).
//
// The sketchpad (#rec-sketch, Gradio's ImageEditor) sends its picture to the server only when a stroke ends.
// This widget follows the pointer while it draws: it paints the same brush (a hard disk of the brush's radius
// along each segment, in the sketch's own 280 x 280 pixels) into an ink grid of its own, frames that grid the
// way vaedemo/images.py preprocess_image frames the sketch (frame() below mirrors _clean and _frame, Pillow's
// Lanczos resize included), and every animation frame encodes the framed digit, decodes its code and finds its
// nearest dataset digits: in the browser with the model's encoder.onnx and decoder.onnx and the bundled digits'
// codes (vaedemo-static/codes/<name>.bin), or, where the page cannot run the model (a GAN, whose encoding is
// a search, or no WebAssembly), with the server's reconstruct_live. When the stroke ends the server's own
// answer arrives as before; tests/test_browser_live.py checks the two framings agree.
//
// props.value is the JSON payload from vaedemo/ui/reconstruct.py live_payload.

const root = element.querySelector('.ls-root');
const title = element.querySelector('.ls-title');
const inCanvas = element.querySelector('.ls-input');
const outCanvas = element.querySelector('.ls-recon');
const codeCanvas = element.querySelector('.ls-code');
const thumbs = element.querySelector('.ls-thumbs');
const note = element.querySelector('.ls-note');
const SIDE = 280; // the sketchpad's canvas_size, in its own pixels

let p = null;        // the payload: {checkpoint, model, encoder, brush, sprite, sprite_cols, codes_url}
let mode = 'pending'; // 'browser' (the page runs the model), 'server', or 'pending'
let codes = null;    // the bundled digits' codes (browser mode), a Promise
let strokes = [];    // the strokes drawn since the last clear: arrays of [x, y] in sketch pixels
let undone = [];     // strokes taken back by Undo, for Redo
let drawing = null;  // the stroke under way
let done = 0;

// ---- the ink: the strokes painted as Gradio's brush paints them (binary, radius = the brush size)

function paint(list, radius, ink = new Uint8Array(SIDE * SIDE)) {
  const r2 = radius * radius;
  for (const stroke of list) {
    for (let s = 0; s < stroke.length; s++) {
      const [ax, ay] = stroke[s];
      const [bx, by] = stroke[Math.min(s + 1, stroke.length - 1)];
      const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - radius)), x1 = Math.min(SIDE - 1, Math.ceil(Math.max(ax, bx) + radius));
      const y0 = Math.max(0, Math.floor(Math.min(ay, by) - radius)), y1 = Math.min(SIDE - 1, Math.ceil(Math.max(ay, by) + radius));
      const dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
      for (let y = y0; y <= y1; y++) {
        for (let x = x0; x <= x1; x++) {
          const px = x + 0.5, py = y + 0.5;
          let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
          t = Math.max(0, Math.min(1, t));
          const ex = px - (ax + t * dx), ey = py - (ay + t * dy);
          if (ex * ex + ey * ey < r2) ink[y * SIDE + x] = 1;
        }
      }
    }
  }
  return ink;
}

// The finished strokes' ink is painted once and kept while they and the brush stay the same, so a frame paints
// only the stroke under way on a copy of it.
let settled = { list: [], radius: -1, ink: new Uint8Array(SIDE * SIDE) };

function inkNow(radius) {
  const same = settled.radius === radius && settled.list.length === strokes.length
    && settled.list.every((stroke, i) => stroke === strokes[i]);
  if (!same) settled = { list: strokes.slice(), radius, ink: paint(strokes, radius) };
  return drawing ? paint([drawing], radius, settled.ink.slice()) : settled.ink.slice();
}

// ---- framing, as images.py: _clean (paper level, threshold, ink peak) then _frame (bounding box into 20 x 20,
// Lanczos, centre of mass at (14, 14), peak 1)

function lanczos(x) {
  if (x <= -3 || x >= 3) return 0;
  if (x === 0) return 1;
  const a = Math.PI * x, b = a / 3;
  return (Math.sin(a) / a) * (Math.sin(b) / b);
}

function coeffs(inSize, outSize) {
  // Pillow's precompute_coeffs (Resample.c) for the Lanczos filter (support 3)
  const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = 3 * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    const k = [];
    let ww = 0;
    for (let x = 0; x < xmax - xmin; x++) { const w = lanczos((x + xmin - center + 0.5) * ss); k.push(w); ww += w; }
    if (ww !== 0) for (let x = 0; x < k.length; x++) k[x] /= ww;
    out.push([xmin, k]);
  }
  return out;
}

function resize(src, w, h, ow, oh) {
  // Pillow's Image.resize(LANCZOS) of a mode "F" image: the horizontal pass, then the vertical one
  if (ow === w && oh === h) return Float64Array.from(src);
  let tmp = src, tw = w;
  if (ow !== w) {
    const cx = coeffs(w, ow);
    tmp = new Float64Array(ow * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < ow; xx++) {
        const [xmin, k] = cx[xx];
        let ss = 0;
        for (let x = 0; x < k.length; x++) ss += src[y * w + xmin + x] * k[x];
        tmp[y * ow + xx] = Math.fround(ss); // mode F stores float32
      }
    }
    tw = ow;
  }
  if (oh === h) return tmp;
  const cy = coeffs(h, oh);
  const out = new Float64Array(tw * oh);
  for (let yy = 0; yy < oh; yy++) {
    const [ymin, k] = cy[yy];
    for (let x = 0; x < tw; x++) {
      let ss = 0;
      for (let y = 0; y < k.length; y++) ss += tmp[(ymin + y) * tw + x] * k[y];
      out[yy * tw + x] = Math.fround(ss);
    }
  }
  return out;
}

function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function frame(ink) {
  // ink: SIDE*SIDE of 0/1, the sketch's ink. Returns Float32Array(784), or null for a blank canvas.
  // _clean: the paper is blank (level 0, no noise), ink is 1, its 99th percentile is 1: the values stay 0/1.
  let r0 = SIDE, r1 = -1, c0 = SIDE, c1 = -1, count = 0;
  for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) {
    if (!ink[y * SIDE + x]) continue;
    count++;
    if (y < r0) r0 = y; if (y > r1) r1 = y; if (x < c0) c0 = x; if (x > c1) c1 = x;
  }
  if (count < 2) return null;
  const h = r1 - r0 + 1, w = c1 - c0 + 1;
  const crop = new Float64Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) crop[y * w + x] = ink[(r0 + y) * SIDE + c0 + x];
  const s = 20 / Math.max(h, w);
  const ow = Math.max(1, roundHalfEven(w * s)), oh = Math.max(1, roundHalfEven(h * s));
  const small = resize(crop, w, h, ow, oh);
  let mass = 0, my = 0, mx = 0;
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const v = Math.max(0, small[y * ow + x]);
    small[y * ow + x] = v;
    mass += v; my += y * v; mx += x * v;
  }
  if (mass <= 0) return null;
  const top = roundHalfEven(14 - my / mass), left = roundHalfEven(14 - mx / mass);
  const out = new Float32Array(784);
  let peak = 0;
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const ty = top + y, tx = left + x;
    if (ty < 0 || ty >= 28 || tx < 0 || tx >= 28) continue;
    out[ty * 28 + tx] = small[y * ow + x];
    if (small[y * ow + x] > peak) peak = small[y * ow + x];
  }
  peak = Math.max(peak, 1e-6);
  for (let i = 0; i < 784; i++) out[i] = Math.min(1, Math.max(0, out[i] / peak));
  return out;
}

// ---- the model: encode, decode, nearest digits

function fetchCodes(q) {
  // The bundled digits' codes as code_mean + coeffs . basis (browser.py bundled_code_file): [N, D, r] int32,
  // code_mean f32 (D), basis f32 (r*D), coeffs f16 (N*r), labels u8 (N)
  return fetch(q.codes_url).then((res) => {
    if (!res.ok) throw new Error('codes: HTTP ' + res.status);
    return res.arrayBuffer();
  }).then((buf) => {
    const [n, d, r] = new Int32Array(buf, 0, 3);
    let at = 12;
    const mean = new Float32Array(buf, at, d); at += 4 * d;
    const basis = new Float32Array(buf, at, r * d); at += 4 * r * d;
    const half = new Uint16Array(buf, at, n * r); at += 2 * n * r;
    const labels = new Uint8Array(buf, at, n);
    const coef = new Float32Array(n * r);
    for (let i = 0; i < coef.length; i++) coef[i] = vaedemoLive.halfToFloat(half[i]);
    return { n, d, r, mean, basis, coef, labels };
  });
}

function nearestDigits(c, mu, k) {
  // The k bundled digits whose codes are nearest mu: distances in the basis' span plus mu's own remainder
  const proj = new Float64Array(c.r);
  let rest = 0;
  const centred = new Float64Array(c.d);
  for (let d = 0; d < c.d; d++) centred[d] = mu[d] - c.mean[d];
  for (let q = 0; q < c.r; q++) { let v = 0; for (let d = 0; d < c.d; d++) v += centred[d] * c.basis[q * c.d + d]; proj[q] = v; }
  for (let d = 0; d < c.d; d++) {
    let v = centred[d];
    for (let q = 0; q < c.r; q++) v -= proj[q] * c.basis[q * c.d + d];
    rest += v * v;
  }
  const best = [];
  for (let i = 0; i < c.n; i++) {
    let s = rest;
    for (let q = 0; q < c.r; q++) { const e = proj[q] - c.coef[i * c.r + q]; s += e * e; }
    if (best.length < k || s < best[best.length - 1][1]) {
      best.push([i, s]);
      best.sort((a, b) => a[1] - b[1]);
      if (best.length > k) best.pop();
    }
  }
  return best.map(([i, s]) => [i, c.labels[i], Math.sqrt(s)]);
}

function bce(probs, offset, x) {
  // -log p(x|z) in nats for probabilities in [0, 1] (clamped as torch's BCE clamps its log at -100)
  let s = 0;
  for (let i = 0; i < 784; i++) {
    const q = probs[offset + i];
    s -= x[i] * Math.max(Math.log(q), -100) + (1 - x[i]) * Math.max(Math.log(1 - q), -100);
  }
  return s;
}

async function inBrowser(q, x) {
  // {recon, mu, sigma, neighbours} for the framed digit x, with the model run by onnxruntime-web
  const L = vaedemoLive, m = q.model, D = m.latent_dim;
  const enc = await L.session(m, 'encoder');
  const n = m.conditional ? m.classes : 1; // a cvae: every label, then the one with the lowest -ELBO (at mu)
  const xs = new Float32Array(n * 784);
  for (let i = 0; i < n; i++) xs.set(x, i * 784);
  const feeds = { x: new ort.Tensor('float32', xs, [n, 1, 28, 28]) };
  const labels = [];
  if (m.conditional) {
    const y = new Float32Array(n * m.classes);
    for (let i = 0; i < n; i++) { y[i * m.classes + i] = 1; labels.push(i); }
    feeds.y = new ort.Tensor('float32', y, [n, m.classes]);
  }
  const got = await enc.run(feeds);
  const mu = got.mu.data, logvar = got.logvar ? got.logvar.data : null;
  const probs = await L.decode(m, mu, n, m.conditional ? labels : null);
  let pick = 0;
  if (m.conditional) {
    let best = Infinity;
    for (let i = 0; i < n; i++) {
      let kl = 0;
      for (let d = 0; d < D; d++) {
        const lv = logvar[i * D + d], u = mu[i * D + d];
        kl += 0.5 * (Math.exp(lv) + u * u - 1 - lv);
      }
      const score = bce(probs, i * 784, x) + kl;
      if (score < best) { best = score; pick = i; }
    }
  }
  const z = mu.slice(pick * D, (pick + 1) * D);
  const sigma = logvar ? Float32Array.from(logvar.slice(pick * D, (pick + 1) * D), v => Math.exp(0.5 * v)) : null;
  const c = await codes;
  return { recon: probs.slice(pick * 784, (pick + 1) * 784), mu: z, sigma, neighbours: nearestDigits(c, z, 5),
           label: m.conditional ? pick : null };
}

// ---- drawing the results

function drawCode(mu, sigma) {
  const ctx = codeCanvas.getContext('2d');
  const W = codeCanvas.width, H = codeCanvas.height, D = mu.length;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  let span = 3;
  for (let d = 0; d < D; d++) span = Math.max(span, Math.abs(mu[d]) + (sigma ? sigma[d] : 0));
  const mid = H / 2, unit = (H / 2 - 4) / span, bw = W / D;
  ctx.fillStyle = '#6366f1';
  for (let d = 0; d < D; d++) {
    const v = mu[d] * unit;
    ctx.fillRect(d * bw + bw * 0.1, Math.min(mid, mid - v), Math.max(1, bw * 0.8), Math.abs(v));
  }
  if (sigma) {
    ctx.strokeStyle = 'rgba(107, 114, 128, 0.55)'; // σ in grey, as plots.code_bars draws it
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let d = 0; d < D; d++) {
      const cx = d * bw + bw / 2;
      ctx.moveTo(cx, mid - (mu[d] + sigma[d]) * unit);
      ctx.lineTo(cx, mid - (mu[d] - sigma[d]) * unit);
    }
    ctx.stroke();
  }
  ctx.strokeStyle = '#374151';
  ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(W, mid); ctx.stroke();
}

function drawThumbs(neighbours) {
  const size = 42;
  thumbs.innerHTML = '';
  for (const [index, label, dist] of neighbours) {
    const row = Math.floor(index / p.sprite_cols), col = index % p.sprite_cols;
    const fig = document.createElement('figure');
    fig.className = 'ls-thumb';
    fig.dataset.index = String(index);
    const cell = document.createElement('div');
    cell.style.cssText = 'width:' + size + 'px;height:' + size + 'px;background:#000 url(' + p.sprite + ') -' +
      (col * size) + 'px -' + (row * size) + 'px / ' + (p.sprite_cols * size) + 'px auto no-repeat';
    const cap = document.createElement('figcaption');
    cap.textContent = label + ' · ' + dist.toFixed(2);
    fig.append(cell, cap);
    thumbs.append(fig);
  }
}

async function step() {
  const mine = p;
  const start = performance.now();
  try {
    const x = frame(inkNow(mine.brush));
    if (!x) return;
    let r;
    if (mode === 'browser') {
      r = await inBrowser(mine, x);
    } else {
      const got = await server.reconstruct_live({ checkpoint: mine.checkpoint, pixels: Array.from(x, v => Math.round(v * 1e4) / 1e4) });
      r = { recon: Float32Array.from(got.recon), mu: Float32Array.from(got.mu),
            sigma: got.sigma ? Float32Array.from(got.sigma) : null, neighbours: got.neighbours, label: got.label };
    }
    if (p !== mine) return;
    vaedemoLive.draw(inCanvas, x, 0);
    vaedemoLive.draw(outCanvas, r.recon, 0);
    drawCode(r.mu, r.sigma);
    drawThumbs(r.neighbours);
    root.hidden = false;
    root._framed = x;
    root._recon = r.recon;
    root._mu = r.mu;
    done += 1;
    root.dataset.count = String(done);
    root.dataset.by = mode;
    root.dataset.drawing = drawing ? '1' : '0';
    if (mode === 'browser') vaedemoLive.stats.frames.push(performance.now() - start);
  } catch (e) {
    note.textContent = 'Could not follow the stroke: ' + (e && e.message ? e.message : e);
  }
}

const { ask } = vaedemoLive.pump(step, () => p && mode !== 'pending'); // the latest state is read when a step starts

// ---- following the sketchpad's pointer

function sketch() { return document.querySelector('#rec-sketch'); }

function brushOn(box) {
  const b = box.querySelector('button[aria-label="Brush"]');
  return !!b && b.classList.contains('highlight');
}

function toSketch(box, e) {
  // client pixels → the sketch's pixels: Gradio shows the 280 x 280 picture centred in its canvas at its zoom
  const canvas = box.querySelectorAll('canvas');
  const rect = canvas[canvas.length - 1].getBoundingClientRect();
  const shown = box.querySelector('.zoom-number');
  const zoom = (shown && parseFloat(shown.textContent) / 100) || 1;
  return [(e.clientX - (rect.left + rect.width / 2)) / zoom + SIDE / 2, (e.clientY - (rect.top + rect.height / 2)) / zoom + SIDE / 2];
}

function onDown(e) {
  const box = sketch();
  if (!p || !box || !(e.target instanceof HTMLCanvasElement) || !box.contains(e.target) || !brushOn(box)) return;
  if (e.button !== 0) return;
  drawing = [toSketch(box, e)];
  ask();
}

function onMove(e) {
  if (!drawing) return;
  const box = sketch();
  if (!box) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of (events.length ? events : [e])) drawing.push(toSketch(box, ev));
  ask();
}

function onUp() {
  if (!drawing) return;
  strokes.push(drawing);
  undone = [];
  drawing = null;
  ask();
}

function onClick(e) {
  const b = e.target instanceof Element ? e.target.closest('#rec-sketch button') : null;
  if (!b) return;
  const what = b.getAttribute('aria-label');
  if (what === 'Clear canvas') { strokes = []; undone = []; }
  else if (what === 'Undo' && strokes.length) undone.push(strokes.pop());
  else if (what === 'Redo' && undone.length) strokes.push(undone.pop());
}

if (!window.vaedemoSketchHooked) {
  // once per page: the widget's element can be rebuilt, the listeners read the current widget's state
  window.vaedemoSketchHooked = true;
  document.addEventListener('pointerdown', (e) => window.vaedemoSketch && window.vaedemoSketch.down(e), true);
  document.addEventListener('pointermove', (e) => window.vaedemoSketch && window.vaedemoSketch.move(e), true);
  document.addEventListener('pointerup', () => window.vaedemoSketch && window.vaedemoSketch.up(), true);
  document.addEventListener('pointercancel', () => window.vaedemoSketch && window.vaedemoSketch.up(), true);
  document.addEventListener('click', (e) => window.vaedemoSketch && window.vaedemoSketch.click(e), true);
}
window.vaedemoSketch = { down: onDown, move: onMove, up: onUp, click: onClick, frame, paint, root };

function setup() {
  let q = null;
  try { q = props.value ? JSON.parse(props.value) : null; } catch (e) { q = null; }
  if (!q || !q.model || !window.vaedemoLive) { p = null; root.hidden = true; return; }
  if (p && p.checkpoint === q.checkpoint && p.model.version === q.model.version) return; // the same model
  p = q;
  title.textContent = 'Live, while you draw: ' + q.checkpoint;
  mode = root.dataset.mode = 'pending';
  root.dataset.by = '';
  const L = vaedemoLive;
  const ready = q.model.encoder
    ? Promise.all([L.session(q.model, 'encoder'), L.session(q.model, 'decoder'), (codes = fetchCodes(q))])
    : Promise.reject(new Error(q.why || 'no encoder for the page'));
  ready.then(() => {
    if (p !== q) return;
    mode = root.dataset.mode = 'browser';
    note.textContent = 'Encoded and decoded in your browser as you draw; the server scores the digit when you lift the pen.';
  }).catch((e) => {
    if (p !== q) return;
    mode = root.dataset.mode = 'server';
    note.textContent = q.model.encoder
      ? 'Followed by the server as you draw: this browser cannot run the model itself.'
      : 'Followed by the server as you draw: ' + (q.why || 'the page cannot run this model') + '.';
    console.info('vaedemo: live sketch on the server (' + (e && e.message ? e.message : e) + ')');
  }).finally(() => { if (drawing || strokes.length) ask(); });
}

watch('value', setup);
setup();
