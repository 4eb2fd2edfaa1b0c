// The explorer page: controls, a canvas, and the animation. The mathematics is in explorer-core.js.
(function () {
  "use strict";
  const E = window.DCExplorer;
  const host = document.getElementById("dc-explorer");
  if (!E || !host) return;

  const N = 1500, T = 1000, VIEW = 4;          // points, diffusion steps, half-width of the view
  const DAB_SPACING = 0.25, MAX_DRAWN = 200;   // a stroke adds one component per 0.25 units, at most 200 in all
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
    "draw": { name: "Draw your own", weights: [], means: [], stds: [], labels: [] },
  };
  // The samplers of each path, the first being the default, and the default number of steps.
  const PATHS = {
    "ddpm": { name: "DDPM schedule", steps: 20,
              samplers: [["ddim", "DDIM"], ["ddpm", "DDPM (ancestral)"], ["dpmpp-2m", "DPM-Solver++(2M)"]] },
    "rectified-flow": { name: "rectified flow", steps: 20, samplers: [["euler", "Euler"], ["heun", "Heun"]] },
    "edm": { name: "EDM", steps: 18, samplers: [["heun", "Heun"], ["euler", "Euler"]] },
  };

  const state = { data: "labelled", path: "ddpm", schedule: "cosine", sampler: "ddim", steps: 20, eta: 0,
                  label: -1, scale: 3, view: "reverse", frame: 0, forwardT: 0, seed: 1, selected: 0,
                  brush: 0.15, mixture: null, traj: null, run: null, playing: false, millis: 0,
                  drawn: { weights: [], means: [], stds: [], labels: [] } };

  // ------------------------------------------------------------------ controls
  host.innerHTML = `
    <div class="dc-controls">
      <label>Data <select data-k="data">${Object.entries(DATASETS).map(([k, d]) =>
        `<option value="${k}">${d.name}</option>`).join("")}</select></label>
      <label>Path <select data-k="path">${Object.entries(PATHS).map(([k, p]) =>
        `<option value="${k}">${p.name}</option>`).join("")}</select></label>
      <label class="dc-schedule">Schedule <select data-k="schedule"><option value="cosine">cosine</option>
        <option value="linear">linear</option></select></label>
      <label>Sampler <select data-k="sampler"></select></label>
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
          <label><span data-o="forwardName">t</span> <input data-k="forwardT" type="range" min="0" max="1000"
            value="0"> <output data-o="forwardT"></output></label>
        </div>
        <fieldset class="dc-component">
          <legend>Component <span data-o="selected"></span> (drag its centre)</legend>
          <label>Weight <input data-k="weight" type="range" min="0.05" max="1" step="0.05"></label>
          <label>Spread <input data-k="std" type="range" min="0.05" max="1" step="0.05"></label>
        </fieldset>
        <fieldset class="dc-draw" hidden>
          <legend>Draw on the canvas (<span data-o="drawn">0</span> components)</legend>
          <label>Brush spread <input data-k="brush" type="range" min="0.05" max="0.6" step="0.05"
            value="0.15"><output data-o="brush">0.15</output></label>
          <button type="button" data-a="clear">Clear</button>
        </fieldset>
        <p class="dc-status" aria-live="polite"></p>
      </div>
    </div>`;
  const $ = (sel) => host.querySelector(sel);
  const canvas = $("canvas"), ctx = canvas.getContext("2d");

  function loadData(key) {
    const d = DATASETS[key];
    state.data = key;
    state.mixture = key === "draw" ? state.drawn      // drawing adds to this one, kept while other data are shown
      : { weights: d.weights.slice(), means: d.means.slice(), stds: d.stds.slice(), labels: d.labels.slice() };
    state.selected = 0;
    const classes = [...new Set(d.labels)];
    $('[data-k="label"]').innerHTML = `<option value="-1">no guidance</option>` +
      (classes.length > 1 ? classes.map((c) => `<option value="${c}">${c}</option>`).join("") : "");
    state.label = -1;                            // unguided first: the whole mixture
    $('[data-k="label"]').value = "-1";
    $('[data-k="data"]').value = key;
    host.querySelectorAll(".dc-guide").forEach((el) => { el.hidden = classes.length < 2; });
    $(".dc-component").hidden = key === "draw";
    $(".dc-draw").hidden = key !== "draw";
  }

  // A path's samplers in the sampler control, its default sampler and steps.
  function loadPath(key) {
    const p = PATHS[key];
    state.path = key;
    state.sampler = p.samplers[0][0];
    state.steps = p.steps;
    const sampler = $('[data-k="sampler"]');
    sampler.innerHTML = p.samplers.map(([v, name]) => `<option value="${v}">${name}</option>`).join("");
    sampler.value = state.sampler;
    $('[data-k="path"]').value = key;
    $('[data-k="steps"]').value = String(state.steps);
    $(".dc-schedule").hidden = key !== "ddpm";
    $(".dc-eta").hidden = state.sampler !== "ddim";
  }

  // ------------------------------------------------------------------ computing
  function resample() {
    if (state.mixture.weights.length === 0) {    // "Draw your own" with nothing drawn: nothing to sample
      state.traj = state.run = null;
      state.frame = 0;
      $('[data-k="frame"]').max = "0";
      draw();
      return;
    }
    const random = E.rng(state.seed);
    const z = random.normals(2 * N);
    const guidance = state.label >= 0 ? { label: state.label, scale: state.scale } : null;
    const started = performance.now();
    // What the trajectory shows, kept with it (the controls may change before the next run).
    const run = { path: state.path, sampler: state.sampler, schedule: state.schedule, eta: state.eta, grid: null };
    if (state.path === "ddpm") {
      state.traj = E.sample({
        schedule: state.schedule, T, sampler: state.sampler, steps: state.steps, eta: state.eta,
        mixture: state.mixture, xT: z, seed: state.seed + 1, guidance,
      });
      run.evaluations = state.traj.length - 1;
    } else {
      // Start from the path's own marginal at the grid's first time: alpha x0 + sigma z with x0 a draw of the
      // data (on rectified flow from t = 1 that is z itself; on EDM, x0 + 80 z).
      const o = { path: state.path, sampler: state.sampler, steps: state.steps, mixture: state.mixture, guidance };
      const g = E.grid(o), x0 = E.sampleMixture(state.mixture, N, E.rng(state.seed + 3)).points;
      o.xT = Float64Array.from(z, (v, p) => g.alpha[0] * x0[p] + g.sigma[0] * v);
      run.grid = g;
      state.traj = E.sample(o);
      run.evaluations = state.sampler === "heun" ? 2 * state.steps - 1 : state.steps;
    }
    state.run = run;
    state.millis = performance.now() - started;
    state.frame = state.traj.length - 1;
    const slider = $('[data-k="frame"]');
    slider.max = String(state.frame);
    slider.value = String(state.frame);
    draw();
  }

  // The forward process on the chosen path: x_t = alpha x0 + sigma eps. The slider runs 0..1000: the DDPM
  // step t; t / 1000 on rectified flow; on EDM a log slider, sigma = 0.002 * 40000^((v - 1) / 999) up to 80.
  function forwardAt(v) {
    if (state.path === "ddpm") {
      const s = E.schedule(state.schedule, T), abar = v === 0 ? 1 : s.alphasCumprod[v - 1];
      return { alpha: Math.sqrt(abar), sigma: Math.sqrt(1 - abar), abar };
    }
    if (state.path === "rectified-flow") return { alpha: 1 - v / 1000, sigma: v / 1000 };
    const sigma = v === 0 ? 0 : E.EDM_SIGMA_MIN * (E.EDM_SIGMA_MAX / E.EDM_SIGMA_MIN) ** ((v - 1) / 999);
    return { alpha: 1, sigma };
  }

  function forwardPoints() {
    const f = forwardAt(state.forwardT);
    const random = E.rng(state.seed + 7), data = E.sampleMixture(state.mixture, N, random);
    const eps = random.normals(2 * N), out = new Float64Array(2 * N);
    for (let p = 0; p < 2 * N; p++) out[p] = f.alpha * data.points[p] + f.sigma * eps[p];
    return { points: out, ...f };
  }

  function forwardText(f) {
    const v = state.forwardT;
    if (state.path === "ddpm") {
      return `Forward process at t = ${v}: ᾱ = ${f.abar.toPrecision(3)}, ${N} draws of √ᾱ x₀ + √(1−ᾱ) ε.`;
    }
    if (state.path === "rectified-flow") {
      return `Forward process on rectified flow at t = ${(v / 1000).toFixed(3)}: ${N} draws of ` +
             `(1 − t) x₀ + t ε; t = 1 is pure noise.`;
    }
    let inside = 0;
    return (points) => {
      for (let p = 0; p < points.length; p += 2) {
        if (Math.abs(points[p]) <= VIEW && Math.abs(points[p + 1]) <= VIEW) inside++;
      }
      return `Forward process on EDM's path at σ = ${f.sigma === 0 ? "0" : f.sigma.toPrecision(3)} (a log ` +
             `slider from 0.002 to 80; at 0, the data): ${N} draws of x₀ + σ ε, of which ${inside} lie in the view.`;
    };
  }

  // ------------------------------------------------------------------ drawing
  function toPixel(x, y) {
    const w = canvas.width;
    return [(x + VIEW) / (2 * VIEW) * w, (VIEW - y) / (2 * VIEW) * w];
  }

  function gridText(run, at) {
    if (run.path === "ddpm") return `the ${run.schedule} schedule`;
    const t = run.grid.ts[at], now = t === 0 ? "0" : t.toPrecision(3);
    if (run.path === "rectified-flow") {
      return `rectified flow (t from ${run.grid.ts[0].toPrecision(3)} to 0 in even steps; now t = ${now})`;
    }
    return `EDM (σ from 80 to 0.002 on Karras's ρ = 7 grid, then 0; now σ = ${now})`;
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
    const m = state.mixture, drawing = state.data === "draw";
    m.weights.forEach((weight, k) => {          // data components: 1 and 2 standard deviations
      const [cx, cy] = toPixel(m.means[2 * k], m.means[2 * k + 1]), r = m.stds[k] / (2 * VIEW) * w;
      ctx.strokeStyle = COLOURS[m.labels[k] % COLOURS.length];
      ctx.lineWidth = !drawing && k === state.selected ? 2.5 : 1.2;
      (drawing ? [1] : [1, 2]).forEach((n) => {
        ctx.beginPath(); ctx.arc(cx, cy, n * r, 0, 2 * Math.PI); ctx.stroke();
      });
      ctx.fillStyle = ctx.strokeStyle;
      ctx.beginPath(); ctx.arc(cx, cy, drawing ? 2.5 : 5, 0, 2 * Math.PI); ctx.fill();
    });
    let points = null, text;
    if (m.weights.length === 0) {
      text = "Nothing drawn yet: click or drag on the canvas to draw your data (each dab is a Gaussian of the " +
             "brush's spread), then the samples follow.";
    } else if (state.view === "forward") {
      const f = forwardPoints(), t = forwardText(f);
      points = f.points;
      text = typeof t === "function" ? t(points) : t;
    } else if (!state.traj) {
      text = "Drawing: the samples follow when you lift the pointer.";
    } else {
      points = state.traj[state.frame];
      const done = state.frame, total = state.traj.length - 1, run = state.run;
      text = `${N} samples, ${labelOf(run)} on ${gridText(run, done)}, step ${done} of ${total} ` +
             `(${run.evaluations} evaluations of the exact denoiser, ${state.millis.toFixed(0)} ms).`;
      if (drawing && m.weights.length >= MAX_DRAWN) text += ` The drawing is full (${MAX_DRAWN} components).`;
    }
    if (points) {
      ctx.fillStyle = "rgba(20, 20, 60, 0.55)";
      for (let p = 0; p < points.length; p += 2) {
        const [px, py] = toPixel(points[p], points[p + 1]);
        ctx.fillRect(px - 1.2, py - 1.2, 2.4, 2.4);
      }
    }
    $(".dc-status").textContent = text;
    $('[data-o="frame"]').textContent = String(state.frame);
    const f = forwardAt(state.forwardT);
    $('[data-o="forwardName"]').textContent = state.path === "edm" ? "σ" : "t";
    $('[data-o="forwardT"]').textContent = state.path === "ddpm" ? String(state.forwardT)
      : state.path === "rectified-flow" ? (state.forwardT / 1000).toFixed(3) : f.sigma.toPrecision(3);
    $('[data-o="drawn"]').textContent = String(state.drawn.weights.length);
    if (!drawing) {
      $('[data-o="selected"]').textContent = `${state.selected + 1} of ${m.weights.length}`;
      $('[data-k="weight"]').value = String(m.weights[state.selected]);
      $('[data-k="std"]').value = String(m.stds[state.selected]);
    }
  }

  function labelOf(run) {
    const sampler = run.sampler;
    if (sampler === "ddim") return `DDIM (η = ${run.eta})`;
    if (sampler === "ddpm") return "DDPM";
    if (sampler === "euler") return "Euler";
    if (sampler === "heun") return "Heun";
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
    if (key === "path") { loadPath(value); later(); return; }
    if (key === "brush") { state.brush = Number(value); $('[data-o="brush"]').textContent = value; return; }
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
    if (state.playing || !state.traj) return;
    state.playing = true;
    const total = state.traj.length - 1, started = performance.now(), duration = 2000;
    const tick = (now) => {
      if (!state.traj) { state.playing = false; return; }
      state.frame = Math.min(total, Math.floor((now - started) / duration * total));
      $('[data-k="frame"]').value = String(state.frame);
      draw();
      if (state.frame < total) requestAnimationFrame(tick); else state.playing = false;
    };
    requestAnimationFrame(tick);
  });
  function clear() {
    state.drawn.weights.length = state.drawn.means.length = state.drawn.stds.length = state.drawn.labels.length = 0;
    resample();
  }
  $('[data-a="clear"]').addEventListener("click", clear);

  // Drag a component's centre; a click near one selects it. On "Draw your own" the pointer paints instead:
  // a dab (an isotropic component of the brush's spread, weight 1) where it goes down and one every 0.25
  // units along the stroke.
  let dragging = -1, painting = null;
  function fromEvent(ev) {
    const box = canvas.getBoundingClientRect(), scale = canvas.width / box.width;
    const px = (ev.clientX - box.left) * scale, py = (ev.clientY - box.top) * scale;
    return [px / canvas.width * 2 * VIEW - VIEW, VIEW - py / canvas.width * 2 * VIEW, px, py];
  }
  function dab(x, y) {
    const d = state.drawn;
    if (d.weights.length >= MAX_DRAWN) return;
    d.weights.push(1);
    d.means.push(Math.max(-VIEW, Math.min(VIEW, x)), Math.max(-VIEW, Math.min(VIEW, y)));
    d.stds.push(state.brush);
    d.labels.push(0);
  }
  function capture(ev) {
    try { canvas.setPointerCapture(ev.pointerId); } catch (e) { /* a synthetic pointer has nothing to capture */ }
  }
  canvas.addEventListener("pointerdown", (ev) => {
    const [x, y, px, py] = fromEvent(ev), m = state.mixture;
    if (state.data === "draw") {
      clearTimeout(pending);
      painting = [x, y];
      dab(x, y);
      capture(ev);
      draw();
      return;
    }
    let best = -1, bestD = 18;
    m.weights.forEach((_, k) => {
      const [cx, cy] = toPixel(m.means[2 * k], m.means[2 * k + 1]), dist = Math.hypot(cx - px, cy - py);
      if (dist < bestD) { best = k; bestD = dist; }
    });
    if (best < 0) return;
    state.selected = dragging = best;
    capture(ev);
    draw();
  });
  canvas.addEventListener("pointermove", (ev) => {
    const [x, y] = fromEvent(ev);
    if (painting) {                             // dabs 0.25 apart along the segment from the last one
      let [lx, ly] = painting, dist = Math.hypot(x - lx, y - ly);
      if (dist < DAB_SPACING) return;
      while (dist >= DAB_SPACING) {
        lx += (x - lx) * DAB_SPACING / dist;
        ly += (y - ly) * DAB_SPACING / dist;
        dab(lx, ly);
        dist = Math.hypot(x - lx, y - ly);
      }
      painting = [lx, ly];
      draw();
      return;
    }
    if (dragging < 0) return;
    state.mixture.means[2 * dragging] = Math.max(-VIEW, Math.min(VIEW, x));
    state.mixture.means[2 * dragging + 1] = Math.max(-VIEW, Math.min(VIEW, y));
    draw();
  });
  function release() {
    if (painting) { painting = null; resample(); }
    if (dragging >= 0) { dragging = -1; resample(); }
  }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);

  loadData(state.data);
  loadPath(state.path);
  resample();
  window.DCExplorerPage = { state, resample, draw, clear };   // for the browser tests
})();
