// The explorer page: controls, a canvas, and the animation. The mathematics is in explorer-core.js.
(function () {
  "use strict";
  const E = window.DCExplorer;
  const host = document.getElementById("dc-explorer");
  if (!E || !host) return;

  const N = 1500, T = 1000, VIEW = 4;          // points, diffusion steps, half-width of the view
  const COLOURS = ["#3f51b5", "#e65100", "#2e7d32", "#ad1457"];
  const DATASETS = {
    "two-clusters": { name: "Two clusters", weights: [0.7, 0.3], means: [-1.5, 0.5, 1.5, -0.8],
                      stds: [0.35, 0.5], labels: [0, 0] },
    "ring": { name: "Ring of six", weights: [1, 1, 1, 1, 1, 1],
              means: [].concat(...[0, 1, 2, 3, 4, 5].map((k) => [2 * Math.cos(k * Math.PI / 3),
                                                                   2 * Math.sin(k * Math.PI / 3)])),
              stds: [0.2, 0.2, 0.2, 0.2, 0.2, 0.2], labels: [0, 0, 0, 0, 0, 0] },
    "labelled": { name: "Three labelled classes", weights: [0.5, 0.3, 0.2],
                  means: [-1.6, -1.0, 1.4, -1.2, 0.2, 1.7], stds: [0.45, 0.4, 0.35], labels: [0, 1, 2] },
  };

  const state = { data: "labelled", schedule: "cosine", sampler: "ddim", steps: 20, eta: 0, label: -1,
                  scale: 3, view: "reverse", frame: 0, forwardT: 0, seed: 1, selected: 0,
                  mixture: null, traj: null, playing: false, millis: 0 };

  // ------------------------------------------------------------------ controls
  host.innerHTML = `
    <div class="dc-controls">
      <label>Data <select data-k="data">${Object.entries(DATASETS).map(([k, d]) =>
        `<option value="${k}">${d.name}</option>`).join("")}</select></label>
      <label>Schedule <select data-k="schedule"><option value="cosine">cosine</option>
        <option value="linear">linear</option></select></label>
      <label>Sampler <select data-k="sampler"><option value="ddim">DDIM</option>
        <option value="ddpm">DDPM (ancestral)</option>
        <option value="dpmpp-2m">DPM-Solver++(2M)</option></select></label>
      <label>Steps <input data-k="steps" type="number" min="1" max="1000" value="20"></label>
      <label class="dc-eta">η <input data-k="eta" type="range" min="0" max="1" step="0.05" value="0">
        <output data-o="eta">0</output></label>
      <label class="dc-guide">Guide to class <select data-k="label"></select></label>
      <label class="dc-guide">Guidance scale <input data-k="scale" type="range" min="0" max="8" step="0.25"
        value="3"><output data-o="scale">3</output></label>
    </div>
    <div class="dc-stage">
      <canvas width="480" height="480" aria-label="Samples of the reverse process, drawn as dots"></canvas>
      <div class="dc-side">
        <div class="dc-view" role="radiogroup">
          <label><input type="radio" name="dc-view" value="reverse" checked> Reverse process</label>
          <label><input type="radio" name="dc-view" value="forward"> Forward process</label>
        </div>
        <div data-show="reverse">
          <button type="button" data-a="sample">Sample again</button>
          <button type="button" data-a="play">Play</button>
          <label>Step <input data-k="frame" type="range" min="0" max="20" value="20">
            <output data-o="frame"></output></label>
        </div>
        <div data-show="forward" hidden>
          <label>t <input data-k="forwardT" type="range" min="0" max="1000" value="0">
            <output data-o="forwardT"></output></label>
        </div>
        <fieldset class="dc-component">
          <legend>Component <span data-o="selected"></span> (drag its centre)</legend>
          <label>Weight <input data-k="weight" type="range" min="0.05" max="1" step="0.05"></label>
          <label>Spread <input data-k="std" type="range" min="0.05" max="1" step="0.05"></label>
        </fieldset>
        <p class="dc-status" aria-live="polite"></p>
      </div>
    </div>`;
  const $ = (sel) => host.querySelector(sel);
  const canvas = $("canvas"), ctx = canvas.getContext("2d");

  function loadData(key) {
    const d = DATASETS[key];
    state.data = key;
    state.mixture = { weights: d.weights.slice(), means: d.means.slice(), stds: d.stds.slice(),
                      labels: d.labels.slice() };
    state.selected = 0;
    const classes = [...new Set(d.labels)];
    $('[data-k="label"]').innerHTML = `<option value="-1">no guidance</option>` +
      (classes.length > 1 ? classes.map((c) => `<option value="${c}">${c}</option>`).join("") : "");
    state.label = -1;                            // unguided first: the whole mixture
    $('[data-k="label"]').value = "-1";
    $('[data-k="data"]').value = key;
    host.querySelectorAll(".dc-guide").forEach((el) => { el.hidden = classes.length < 2; });
  }

  // ------------------------------------------------------------------ computing
  function resample() {
    const random = E.rng(state.seed);
    const xT = random.normals(2 * N);
    const started = performance.now();
    state.traj = E.sample({
      schedule: state.schedule, T, sampler: state.sampler, steps: state.steps, eta: state.eta,
      mixture: state.mixture, xT, seed: state.seed + 1,
      guidance: state.label >= 0 ? { label: state.label, scale: state.scale } : null,
    });
    state.millis = performance.now() - started;
    state.frame = state.traj.length - 1;
    const slider = $('[data-k="frame"]');
    slider.max = String(state.frame);
    slider.value = String(state.frame);
    draw();
  }

  function forwardPoints() {
    const s = E.schedule(state.schedule, T), abar = state.forwardT === 0 ? 1 : s.alphasCumprod[state.forwardT - 1];
    const random = E.rng(state.seed + 7), data = E.sampleMixture(state.mixture, N, random);
    const eps = random.normals(2 * N), out = new Float64Array(2 * N);
    for (let p = 0; p < 2 * N; p++) out[p] = Math.sqrt(abar) * data.points[p] + Math.sqrt(1 - abar) * eps[p];
    return { points: out, abar };
  }

  // ------------------------------------------------------------------ drawing
  function toPixel(x, y) {
    const w = canvas.width;
    return [(x + VIEW) / (2 * VIEW) * w, (VIEW - y) / (2 * VIEW) * w];
  }

  function draw() {
    const w = canvas.width;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, w);
    ctx.strokeStyle = "#e0e0e0";
    ctx.lineWidth = 1;
    for (let g = -VIEW; g <= VIEW; g++) {
      const [gx] = toPixel(g, 0), [, gy] = toPixel(0, g);
      ctx.beginPath(); ctx.moveTo(gx, 0); ctx.lineTo(gx, w); ctx.moveTo(0, gy); ctx.lineTo(w, gy); ctx.stroke();
    }
    const m = state.mixture;
    m.weights.forEach((weight, k) => {          // data components: 1 and 2 standard deviations
      const [cx, cy] = toPixel(m.means[2 * k], m.means[2 * k + 1]), r = m.stds[k] / (2 * VIEW) * w;
      ctx.strokeStyle = COLOURS[m.labels[k] % COLOURS.length];
      ctx.lineWidth = k === state.selected ? 2.5 : 1.2;
      [1, 2].forEach((n) => { ctx.beginPath(); ctx.arc(cx, cy, n * r, 0, 2 * Math.PI); ctx.stroke(); });
      ctx.fillStyle = ctx.strokeStyle;
      ctx.beginPath(); ctx.arc(cx, cy, 5, 0, 2 * Math.PI); ctx.fill();
    });
    let points, text;
    if (state.view === "forward") {
      const f = forwardPoints();
      points = f.points;
      text = `Forward process at t = ${state.forwardT}: ᾱ = ${f.abar.toPrecision(3)}, ` +
             `${N} draws of √ᾱ x₀ + √(1−ᾱ) ε.`;
    } else {
      points = state.traj[state.frame];
      const done = state.frame, total = state.traj.length - 1;
      text = `${N} samples, ${labelOf(state.sampler)}, step ${done} of ${total} ` +
             `(${total} evaluations of the exact score, ${state.millis.toFixed(0)} ms).`;
    }
    ctx.fillStyle = "rgba(20, 20, 60, 0.55)";
    for (let p = 0; p < points.length; p += 2) {
      const [px, py] = toPixel(points[p], points[p + 1]);
      ctx.fillRect(px - 1.2, py - 1.2, 2.4, 2.4);
    }
    $(".dc-status").textContent = text;
    $('[data-o="frame"]').textContent = String(state.frame);
    $('[data-o="forwardT"]').textContent = String(state.forwardT);
    $('[data-o="selected"]').textContent = `${state.selected + 1} of ${m.weights.length}`;
    $('[data-k="weight"]').value = String(m.weights[state.selected]);
    $('[data-k="std"]').value = String(m.stds[state.selected]);
  }

  function labelOf(sampler) {
    if (sampler === "ddim") return `DDIM (η = ${state.eta})`;
    if (sampler === "ddpm") return "DDPM";
    return "DPM-Solver++(2M)";
  }

  // ------------------------------------------------------------------ events
  let pending = 0;
  function later() {                             // recompute once the reader pauses
    clearTimeout(pending);
    pending = setTimeout(resample, 120);
  }

  host.addEventListener("input", (ev) => {
    const key = ev.target.dataset.k;
    if (!key) return;
    const value = ev.target.value;
    if (key === "data") { loadData(value); later(); return; }
    if (key === "weight" || key === "std") {
      state.mixture[key === "weight" ? "weights" : "stds"][state.selected] = Number(value);
      later();
      return;
    }
    if (key === "schedule" || key === "sampler") state[key] = value;
    else if (key === "steps") {
      const n = Math.round(Number(value));
      if (!(n >= 1 && n <= T)) return;          // keep the last valid number while typing
      state.steps = n;
    } else state[key] = Number(value);
    const out = host.querySelector(`[data-o="${key}"]`);
    if (out) out.textContent = value;
    host.querySelector(".dc-eta").hidden = state.sampler !== "ddim";
    if (key === "frame" || key === "forwardT") draw(); else later();
  });

  host.querySelectorAll('input[name="dc-view"]').forEach((radio) => radio.addEventListener("change", () => {
    state.view = radio.value;
    host.querySelectorAll("[data-show]").forEach((el) => { el.hidden = el.dataset.show !== state.view; });
    draw();
  }));

  $('[data-a="sample"]').addEventListener("click", () => { state.seed += 2; resample(); });
  $('[data-a="play"]').addEventListener("click", () => {
    if (state.playing) return;
    state.playing = true;
    const total = state.traj.length - 1, started = performance.now(), duration = 2000;
    const tick = (now) => {
      state.frame = Math.min(total, Math.floor((now - started) / duration * total));
      $('[data-k="frame"]').value = String(state.frame);
      draw();
      if (state.frame < total) requestAnimationFrame(tick); else state.playing = false;
    };
    requestAnimationFrame(tick);
  });

  // Drag a component's centre; a click near one selects it.
  let dragging = -1;
  function fromEvent(ev) {
    const box = canvas.getBoundingClientRect(), scale = canvas.width / box.width;
    const px = (ev.clientX - box.left) * scale, py = (ev.clientY - box.top) * scale;
    return [px / canvas.width * 2 * VIEW - VIEW, VIEW - py / canvas.width * 2 * VIEW, px, py];
  }
  canvas.addEventListener("pointerdown", (ev) => {
    const [, , px, py] = fromEvent(ev), m = state.mixture;
    let best = -1, bestD = 18;
    m.weights.forEach((_, k) => {
      const [cx, cy] = toPixel(m.means[2 * k], m.means[2 * k + 1]), dist = Math.hypot(cx - px, cy - py);
      if (dist < bestD) { best = k; bestD = dist; }
    });
    if (best < 0) return;
    state.selected = dragging = best;
    canvas.setPointerCapture(ev.pointerId);
    draw();
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (dragging < 0) return;
    const [x, y] = fromEvent(ev);
    state.mixture.means[2 * dragging] = Math.max(-VIEW, Math.min(VIEW, x));
    state.mixture.means[2 * dragging + 1] = Math.max(-VIEW, Math.min(VIEW, y));
    draw();
  });
  canvas.addEventListener("pointerup", () => { if (dragging >= 0) { dragging = -1; resample(); } });

  loadData(state.data);
  host.querySelector(".dc-eta").hidden = true;
  resample();
  window.DCExplorerPage = { state, resample, draw };   // for the browser tests
})();
