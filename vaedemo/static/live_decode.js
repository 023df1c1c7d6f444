// Decoding in the browser: a checkpoint's decoder.onnx run by onnxruntime-web (WASM, on several threads where the
// page is cross-origin isolated), and the maps' way from a place back to a code, mirroring the server
// (vaedemo/inference/browser.py map_inverse, projections.py). Prepended to the js_on_load of the widgets that
// decode live; defines window.vaedemoLive once.
//
// When WebAssembly or a model file is unavailable, session() rejects and the widget asks the server instead.
(function () {
  if (window.vaedemoLive) return;
  const BASE = new URL('vaedemo-static/', document.baseURI).href;
  const sessions = new Map(); // url → Promise<InferenceSession>
  const stats = { decodes: [], frames: [], firstUse: {} }; // milliseconds, read by the benchmark and the tests
  let configured = false;

  function configure() {
    if (typeof ort === 'undefined') throw new Error('onnxruntime-web did not load');
    if (configured) return;
    configured = true;
    // The server sends the cross-origin isolation headers (ui/server.py), which give the page SharedArrayBuffer
    // and so WASM threads; where the page is not isolated (a frame on another site, Safari), one thread.
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = {
      mjs: BASE + 'ort/ort-wasm-simd-threaded.mjs', wasm: BASE + 'ort/ort-wasm-simd-threaded.wasm',
    };
    ort.env.logLevel = 'error';
  }

  // An Identity graph (68 bytes, made with onnx.helper): creating a session of it loads and compiles the WASM
  // runtime, which warm() starts as soon as a live widget appears, while the server computes what it will show.
  const WARM_ONNX = 'CAg6OgoQCgF4EgF5IghJZGVudGl0eRIEd2FybVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0=';
  let warming = null;
  function warm() {
    if (!warming) {
      const start = performance.now();
      warming = (async () => {
        configure();
        const raw = Uint8Array.from(atob(WARM_ONNX), ch => ch.charCodeAt(0));
        await ort.InferenceSession.create(raw, { executionProviders: ['wasm'] });
        stats.runtime = performance.now() - start;
        stats.runtimeReady = performance.now(); // since the page's navigation began
        stats.threads = ort.env.wasm.numThreads;
      })();
      warming.catch(() => { warming = null; });
    }
    return warming;
  }

  function modelUrl(model, which) {
    return BASE + 'onnx/' + encodeURIComponent(model.name) + '/' + which + '.onnx?v=' + model.version;
  }

  function session(model, which) {
    const url = modelUrl(model, which || 'decoder');
    if (!sessions.has(url)) {
      const start = performance.now();
      const made = (async () => {
        await warm();
        const s = await ort.InferenceSession.create(url, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
        stats.firstUse[url] = performance.now() - start;
        return s;
      })();
      made.catch(() => sessions.delete(url)); // a later call may try again (e.g. after a network hiccup)
      sessions.set(url, made);
    }
    return sessions.get(url);
  }

  // Pixel probabilities (Float32Array of n*784) for codes z (Float32Array of n*D); labels: n class numbers.
  async function decode(model, z, n, labels) {
    const s = await session(model, 'decoder');
    const start = performance.now();
    const feeds = { z: new ort.Tensor('float32', z, [n, model.latent_dim]) };
    if (model.conditional) {
      const y = new Float32Array(n * model.classes);
      for (let i = 0; i < n; i++) y[i * model.classes + (labels ? labels[i] : 0)] = 1;
      feeds.y = new ort.Tensor('float32', y, [n, model.classes]);
    }
    const out = await s.run(feeds);
    const probs = out.probs.data;
    stats.decodes.push(performance.now() - start);
    if (stats.decodes.length > 2000) stats.decodes.splice(0, 1000);
    return probs;
  }

  // Draw one 28x28 digit (probabilities from `offset`) white on black, scaled to fill `canvas`.
  const tile = document.createElement('canvas');
  tile.width = tile.height = 28;
  function draw(canvas, probs, offset) {
    const tctx = tile.getContext('2d');
    const img = tctx.createImageData(28, 28);
    const o = offset || 0;
    for (let i = 0; i < 784; i++) {
      const v = Math.max(0, Math.min(255, Math.round(probs[o + i] * 255)));
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tile, 0, 0, canvas.width, canvas.height);
  }

  // ---- the maps' way back: base64 arrays from the payload, then place → code

  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function f32(b64) { return new Float32Array(bytes(b64).buffer); }
  function halfToFloat(h) {
    const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function f16(b64) {
    const u = new Uint16Array(bytes(b64).buffer);
    const out = new Float32Array(u.length);
    for (let i = 0; i < u.length; i++) out[i] = halfToFloat(u[i]);
    return out;
  }

  // The payload's inverse (latent_map.py live_part) as typed arrays, decoded once per map.
  function unpack(inv) {
    const u = { method: inv.method, dim: inv.dim };
    if (inv.mean) u.mean = f32(inv.mean);
    if (inv.components) u.components = f32(inv.components);
    if (inv.coords) { u.coords = f32(inv.coords); u.n = u.coords.length / 2; }
    if (inv.coeffs) {
      u.coeffs = f16(inv.coeffs); u.codeMean = f32(inv.code_mean); u.basis = f32(inv.basis);
      u.rank = u.basis.length / inv.dim;
    }
    if (inv.labels) u.labels = bytes(inv.labels);
    u.k = inv.k; u.eps = inv.eps; u.a = inv.a; u.b = inv.b;
    return u;
  }

  function nearest(u, x, y, k) {
    // The k nearest map points to (x, y): [indices, distances], nearest first (k is 10 or 15: insertion sort).
    const idx = new Int32Array(k).fill(-1), dist = new Float64Array(k).fill(Infinity);
    const c = u.coords;
    for (let i = 0; i < u.n; i++) {
      const dx = c[2 * i] - x, dy = c[2 * i + 1] - y;
      const d2 = dx * dx + dy * dy;
      if (d2 >= dist[k - 1]) continue;
      let j = k - 1;
      while (j > 0 && dist[j - 1] > d2) { dist[j] = dist[j - 1]; idx[j] = idx[j - 1]; j--; }
      dist[j] = d2; idx[j] = i;
    }
    for (let j = 0; j < k; j++) dist[j] = Math.sqrt(dist[j]);
    return [idx, dist];
  }

  // The code (Float32Array of D) behind the place (x, y) of a map, and the label a conditional model decodes
  // it with (the nearest digit's, as maps.decode_at), by the same rule as the server.
  function placeToCode(u, x, y) {
    const D = u.dim;
    const z = new Float32Array(D);
    let label = null;
    if (u.labels) label = u.labels[nearest(u, x, y, 1)[0][0]];
    if (u.method === 'pca') {
      for (let d = 0; d < D; d++) z[d] = u.mean[d] + x * u.components[d] + y * u.components[D + d];
      return { z, label };
    }
    const k = Math.min(u.k, u.n);
    const [idx, dist] = nearest(u, x, y, k);
    const w = new Float64Array(k);
    let total = 0;
    for (let j = 0; j < k; j++) {
      // t-SNE: inverse distance (TSNEProjection.inverse); UMAP: its kernel 1 / (1 + a d^2b) (inverse_transform)
      w[j] = u.method === 'tsne' ? 1 / Math.max(dist[j], u.eps) : 1 / (1 + u.a * Math.pow(dist[j], 2 * u.b));
      total += w[j];
    }
    const r = u.rank;
    const blend = new Float64Array(r);
    for (let j = 0; j < k; j++) {
      const row = idx[j] * r, wj = w[j] / total;
      for (let q = 0; q < r; q++) blend[q] += wj * u.coeffs[row + q];
    }
    for (let d = 0; d < D; d++) {
      let v = u.codeMean[d];
      for (let q = 0; q < r; q++) v += blend[q] * u.basis[q * D + d];
      z[d] = v;
    }
    return { z, label };
  }

  // One decode in flight and only the newest wish next, at most once per animation frame: a widget calls
  // ask(wish) as often as its input moves (the pointer, a slider, a stroke); step(wish) runs when ready(wish)
  // and nothing else runs, and wishes made meanwhile collapse into the last one. kick() retries once ready.
  function pump(step, ready) {
    let want = null, busy = false;
    async function run() {
      if (busy || want === null || !ready(want)) return;
      const wish = want;
      want = null;
      busy = true;
      try {
        await step(wish);
      } finally {
        busy = false;
        if (want !== null) requestAnimationFrame(run);
      }
    }
    function ask(wish) {
      const first = want === null;
      want = wish === undefined ? true : wish;
      if (first) requestAnimationFrame(run);
    }
    function kick() { if (want !== null) requestAnimationFrame(run); }
    return { ask, kick };
  }

  window.vaedemoLive = { BASE, warm, session, decode, draw, unpack, placeToCode, pump, stats, f16, f32, halfToFloat };
  // Start at once (a failure shows when a widget asks for a session, and it falls back to the server); in the
  // page's head this runs before onnxruntime-web's own script has loaded, so wait for it a little.
  (function start(tries) {
    if (typeof ort !== 'undefined') warm().catch(() => {});
    else if (tries > 0) setTimeout(() => start(tries - 1), 50);
  })(200);
})();
