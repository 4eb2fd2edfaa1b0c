// The explorer's mathematics: a second implementation of diffusion_core's schedules, respacing,
// exact Gaussian-mixture denoiser and samplers (DDPM, DDIM, DPM-Solver++(2M)), in double precision.
// No DOM here: tests/test_explorer.py runs these functions in a browser against the Python library.
// Points are 2-D and stored flat, [x0, y0, x1, y1, ...], in Float64Arrays.
(function (root) {
  "use strict";

  // ------------------------------------------------------------------ schedules (diffusion_core/schedule.py)
  // torch.linspace: the first half counts up from start, the second half down from end.
  function linspace(start, end, n) {
    const out = new Float64Array(n);
    if (n === 1) { out[0] = start; return out; }
    const step = (end - start) / (n - 1), half = Math.floor(n / 2);
    for (let i = 0; i < n; i++) out[i] = i < half ? start + step * i : end - step * (n - i - 1);
    return out;
  }

  // torch.round: halves go to the even neighbour.
  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : r;
  }

  function linearBetas(T) {                       // Ho et al. 2020, end points scaled by 1000/T
    const scale = 1000 / T;
    return linspace(scale * 1e-4, Math.min(scale * 0.02, 0.999), T);
  }

  function cosineBetas(T, s = 0.008, maxBeta = 0.999) {   // Nichol & Dhariwal 2021, eq. 17
    const f = new Float64Array(T + 1);
    for (let i = 0; i <= T; i++) f[i] = Math.cos((i / T + s) / (1 + s) * Math.PI / 2) ** 2;
    const b = new Float64Array(T);
    for (let i = 0; i < T; i++) b[i] = Math.min(1 - (f[i + 1] / f[0]) / (f[i] / f[0]), maxBeta);
    return b;
  }

  // The tables NoiseSchedule derives from its betas (index 0 is the step next to the data).
  function tables(betas, timesteps) {
    const n = betas.length, ac = new Float64Array(n), acPrev = new Float64Array(n);
    let p = 1;
    for (let i = 0; i < n; i++) { acPrev[i] = p; p *= 1 - betas[i]; ac[i] = p; }
    const postVar = new Float64Array(n), coef1 = new Float64Array(n), coef2 = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      postVar[i] = betas[i] * (1 - acPrev[i]) / (1 - ac[i]);
      coef1[i] = Math.sqrt(acPrev[i]) * betas[i] / (1 - ac[i]);
      coef2[i] = Math.sqrt(1 - betas[i]) * (1 - acPrev[i]) / (1 - ac[i]);
    }
    const ts = timesteps || Int32Array.from({ length: n }, (_, i) => i);
    return { betas, alphasCumprod: ac, alphasCumprodPrev: acPrev, posteriorVariance: postVar,
             coef1, coef2, timesteps: ts, n };
  }

  function schedule(kind, T) {
    if (kind === "linear") return tables(linearBetas(T));
    if (kind === "cosine") return tables(cosineBetas(T));
    throw new Error(`schedule: unknown kind ${kind}`);
  }

  // spaced_timesteps(T, steps, "linspace"): round(linspace(0, T-1, steps)) as numpy (and so diffusers) computes
  // it, i * step with the last value set to T-1 (not torch.linspace's two halves: they differ at half-way values).
  function linspaceTimesteps(T, steps) {
    if (steps === 1) return Int32Array.of(0);
    const step = (T - 1) / (steps - 1);
    return Int32Array.from({ length: steps }, (_, i) => (i === steps - 1 ? T - 1 : roundHalfEven(i * step)));
  }

  // NoiseSchedule.respace(keep): beta'_i = 1 - abar_{k_i} / abar_{k_{i-1}} (improved DDPM, sec. 4).
  function respace(s, keep) {
    const b = new Float64Array(keep.length);
    for (let i = 0; i < keep.length; i++) {
      const ac = s.alphasCumprod[keep[i]], prev = i > 0 ? s.alphasCumprod[keep[i - 1]] : 1;
      b[i] = 1 - ac / prev;
    }
    return tables(b, Int32Array.from(keep, (k) => s.timesteps[k]));
  }

  function spaced(s, steps) {
    return steps === s.n ? s : respace(s, linspaceTimesteps(s.n, steps));
  }

  // ------------------------------------------------------------------ the exact denoiser
  // Data: a mixture of isotropic 2-D Gaussians, component k with weight w_k, mean mu_k, std s_k.
  // With a = sqrt(abar), s = sqrt(1 - abar): x_t | k ~ N(a mu_k, v_k I), v_k = a^2 s_k^2 + s^2, and
  // E[eps | x_t, k] = s (x_t - a mu_k) / v_k; E[eps | x_t] averages over k with the posterior weights.
  function mixtureEps(mixture, abar, x, out, only) {
    const a = Math.sqrt(abar), s = Math.sqrt(1 - abar), K = mixture.weights.length;
    const v = mixture.stds.map((sd) => a * a * sd ** 2 + s * s);           // the same for every point
    const logPrior = mixture.weights.map((w, k) => Math.log(w) - Math.log(v[k]));
    const logr = new Float64Array(K);
    for (let p = 0; p < x.length; p += 2) {
      let top = -Infinity;
      for (let k = 0; k < K; k++) {
        if (only !== undefined && mixture.labels[k] !== only) { logr[k] = -Infinity; continue; }
        const dx = x[p] - a * mixture.means[2 * k], dy = x[p + 1] - a * mixture.means[2 * k + 1];
        logr[k] = logPrior[k] - (dx * dx + dy * dy) / (2 * v[k]);
        if (logr[k] > top) top = logr[k];
      }
      let z = 0, ex = 0, ey = 0;
      for (let k = 0; k < K; k++) {
        if (logr[k] === -Infinity) continue;
        const r = Math.exp(logr[k] - top);
        z += r;
        ex += r * s * (x[p] - a * mixture.means[2 * k]) / v[k];
        ey += r * s * (x[p + 1] - a * mixture.means[2 * k + 1]) / v[k];
      }
      out[p] = ex / z;
      out[p + 1] = ey / z;
    }
    return out;
  }

  // A denoiser in diffusion_core's sense: (x_t, index i of the walked schedule) -> {eps, x0}. The
  // network's time input is the original step timesteps[i]; abar is looked up in the original schedule.
  // With a class and a scale, classifier-free guidance (Ho & Salimans 2022, eq. 6; scale s = 1 + w):
  // eps = eps_c + (s - 1)(eps_c - eps_u), eps_u the whole mixture's, eps_c that of class c's components.
  function denoiser(mixture, original, walked, guidance) {
    return function (x, i) {
      const abarNet = original.alphasCumprod[walked.timesteps[i]];
      let eps = mixtureEps(mixture, abarNet, x, new Float64Array(x.length));
      if (guidance && guidance.label !== undefined && guidance.label !== null) {
        const cond = mixtureEps(mixture, abarNet, x, new Float64Array(x.length), guidance.label);
        const w = guidance.scale - 1;
        for (let p = 0; p < x.length; p++) cond[p] += w * (cond[p] - eps[p]);
        eps = cond;
      }
      const ab = walked.alphasCumprod[i], a = Math.sqrt(ab), s = Math.sqrt(1 - ab);
      const x0 = new Float64Array(x.length);
      for (let p = 0; p < x.length; p++) x0[p] = (x[p] - s * eps[p]) / a;
      return { eps, x0 };
    };
  }

  // ------------------------------------------------------------------ samplers (samplers.py, solvers.py)
  // Each walks the schedule from index n-1 down to 0 and returns every state (trajectory[0] = x_T).
  // noise(i) gives the N(0, I) draw of the step at index i > 0 (DDPM, and DDIM with eta > 0).

  function ddpm(model, s, xT, noise, variance = "fixed_large") {
    const traj = [Float64Array.from(xT)];
    let x = Float64Array.from(xT);
    const logLarge0 = Math.log(s.n > 1 ? s.posteriorVariance[1] : s.betas[0]);
    for (let i = s.n - 1; i >= 0; i--) {
      const { x0 } = model(x, i);
      const logVar = variance === "fixed_small"
        ? (i === 0 ? logLarge0 : Math.log(s.posteriorVariance[i]))
        : (i === 0 ? logLarge0 : Math.log(s.betas[i]));
      const z = i > 0 ? noise(i) : null, sd = Math.exp(0.5 * logVar), next = new Float64Array(x.length);
      for (let p = 0; p < x.length; p++) {
        const mean = s.coef1[i] * x0[p] + s.coef2[i] * x[p];
        next[p] = i > 0 ? mean + sd * z[p] : mean;
      }
      x = next;
      traj.push(x);
    }
    return traj;
  }

  function ddim(model, s, xT, noise, eta = 0) {
    const traj = [Float64Array.from(xT)];
    let x = Float64Array.from(xT);
    for (let i = s.n - 1; i >= 0; i--) {
      const { eps, x0 } = model(x, i);
      const abPrev = s.alphasCumprodPrev[i], sigma = eta * Math.sqrt(s.posteriorVariance[i]);
      const keep = Math.sqrt(Math.max(1 - abPrev - sigma * sigma, 0));
      const z = eta > 0 && i > 0 ? noise(i) : null, next = new Float64Array(x.length);
      for (let p = 0; p < x.length; p++) {
        next[p] = Math.sqrt(abPrev) * x0[p] + keep * eps[p] + (z ? sigma * z[p] : 0);
      }
      x = next;
      traj.push(x);
    }
    return traj;
  }

  // DPM-Solver++(2M), Lu et al. 2022, Algorithm 2, with lambda = log(alpha / sigma): the update
  // x_next = (sigma_next / sigma) x + c0 x0 + c1 (x0 - x0_prev), c0 = alpha_next (1 - e^{-h}),
  // c1 = c0 h / (2 h_prev); first order at the first and last steps, and at the step into index 0
  // when fewer than 15 steps are taken (lower_order_final, as diffusers).
  function dpmpp2m(model, s, xT) {
    const n = s.n, a = [], sig = [], lam = [];
    for (let i = 0; i < n; i++) {
      a[i] = Math.sqrt(s.alphasCumprod[i]);
      sig[i] = Math.sqrt(1 - s.alphasCumprod[i]);
      lam[i] = Math.log(a[i]) - Math.log(sig[i]);
    }
    const traj = [Float64Array.from(xT)];
    let x = Float64Array.from(xT), prev = new Float64Array(xT.length);
    for (let i = n - 1; i >= 0; i--) {
      const { x0 } = model(x, i);
      if (i === 0) { x = x0; traj.push(x); break; }
      const aNext = Math.sqrt(s.alphasCumprodPrev[i]), sigNext = Math.sqrt(1 - s.alphasCumprodPrev[i]);
      const h = (Math.log(aNext) - Math.log(sigNext)) - lam[i];
      const cx = sigNext / sig[i], c0 = aNext * -Math.expm1(-h);
      const firstOrder = i === n - 1 || (n < 15 && i === 1);
      const c1 = firstOrder ? 0 : c0 * h / (2 * (lam[i] - lam[i + 1]));
      const next = new Float64Array(x.length);
      for (let p = 0; p < x.length; p++) next[p] = cx * x[p] + c0 * x0[p] + c1 * (x0[p] - prev[p]);
      prev = x0;
      x = next;
      traj.push(x);
    }
    return traj;
  }

  // ------------------------------------------------------------------ randomness for the live page
  // A seeded generator (mulberry32) and Box-Muller normals; the tests pass their own noise instead.
  function rng(seed) {
    let t = seed >>> 0;
    const uniform = () => {
      t = (t + 0x6d2b79f5) >>> 0;
      let r = Math.imul(t ^ (t >>> 15), 1 | t);
      r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
      return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
    };
    const normals = (count) => {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i += 2) {
        const u = 1 - uniform(), v = uniform(), r = Math.sqrt(-2 * Math.log(u));
        out[i] = r * Math.cos(2 * Math.PI * v);
        if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * v);
      }
      return out;
    };
    return { uniform, normals };
  }

  // Draw n points of the mixture (for the forward process); returns {points, labels}.
  function sampleMixture(mixture, n, random) {
    const points = new Float64Array(2 * n), labels = new Int32Array(n), eps = random.normals(2 * n);
    const total = mixture.weights.reduce((u, v) => u + v, 0);
    for (let j = 0; j < n; j++) {
      let u = random.uniform() * total, k = 0;
      while (k < mixture.weights.length - 1 && u >= mixture.weights[k]) u -= mixture.weights[k++];
      points[2 * j] = mixture.means[2 * k] + mixture.stds[k] * eps[2 * j];
      points[2 * j + 1] = mixture.means[2 * k + 1] + mixture.stds[k] * eps[2 * j + 1];
      labels[j] = mixture.labels ? mixture.labels[k] : 0;
    }
    return { points, labels };
  }

  // One call for the page and the tests: options {schedule, T, sampler, steps, eta, variance,
  // guidance: {label, scale}, mixture: {weights, means (flat), stds, labels}, xT, noise(i) or seed}.
  function sample(o) {
    const original = schedule(o.schedule, o.T);
    const walked = o.sampler === "ddpm" && (o.steps === undefined || o.steps === o.T)
      ? original : spaced(original, o.steps);
    const model = denoiser(o.mixture, original, walked, o.guidance);
    const random = o.noise ? null : rng(o.seed || 0);
    const noise = o.noise || (() => random.normals(o.xT.length));
    if (o.sampler === "ddpm") return ddpm(model, walked, o.xT, noise, o.variance);
    if (o.sampler === "ddim") return ddim(model, walked, o.xT, noise, o.eta || 0);
    if (o.sampler === "dpmpp-2m") return dpmpp2m(model, walked, o.xT);
    throw new Error(`sampler: unknown ${o.sampler}`);
  }

  root.DCExplorer = { linspace, roundHalfEven, schedule, linspaceTimesteps, respace, spaced, mixtureEps,
                      denoiser, ddpm, ddim, dpmpp2m, rng, sampleMixture, sample };
})(typeof window !== "undefined" ? window : globalThis);
