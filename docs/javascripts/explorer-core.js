// The explorer's mathematics: a second implementation of diffusion_core's schedules, respacing,
// exact Gaussian-mixture denoiser and samplers (DDPM, DDIM, DPM-Solver++(2M)) on the DDPM path, and of its
// continuous paths (rectified flow, EDM's variance-exploding path), time grids and Euler / Heun samplers,
// in double precision.
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
    const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
    return mixtureAverage(mixture, a, s, x, out, only, (k, xc, mc, v) => s * (xc - a * mc) / v);
  }

  // E[f_k(x_t) | x_t] = sum_k r_k f_k(x_t), with the posterior weights r_k of the components at (alpha, sigma) =
  // (a, s) (only class `only`'s components, if given), for each coordinate: f(k, x_t coordinate, mu_k coordinate, v_k).
  function mixtureAverage(mixture, a, s, x, out, only, f) {
    const K = mixture.weights.length;
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
        ex += r * f(k, x[p], mixture.means[2 * k], v[k]);
        ey += r * f(k, x[p + 1], mixture.means[2 * k + 1], v[k]);
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

  // ------------------------------------------------------------------ continuous paths (paths.py, grids.py)
  // x_t = alpha_t x0 + sigma_t eps. Rectified flow: alpha = 1 - t, sigma = t on [0, 1]. EDM's path is
  // VarianceExploding: alpha = 1, sigma = t (Karras's sigma) up to sigma_max = 80. tOfLogSnr inverts
  // lambda = log(alpha^2 / sigma^2), as the library's t_of_log_snr.
  const KARRAS_RHO = 7, EDM_SIGMA_MIN = 0.002, EDM_SIGMA_MAX = 80;
  const PATHS = {
    "rectified-flow": { name: "rectified flow", tMax: 1, alpha: (t) => 1 - t, sigma: (t) => t,
                        tOfLogSnr: (lam) => 1 / (1 + Math.exp(0.5 * lam)) },          // sigmoid(-lambda/2)
    "edm": { name: "EDM", tMax: EDM_SIGMA_MAX, alpha: () => 1, sigma: (t) => t,
             tOfLogSnr: (lam) => Math.exp(-0.5 * lam) },
  };

  function tOfEdmSigma(path, edmSigma) {            // the time where sigma / alpha = edmSigma
    return path.tOfLogSnr(-2 * Math.log(edmSigma));
  }

  // time_grid(path, steps, spacing, sigma_max=...): steps + 1 decreasing times ending at 0. "uniform":
  // t_max (1 - k / steps); "log-snr" / "karras": even in lambda / in (sigma/alpha)^(1/rho) from t_max to the
  // time of sigma/alpha = 0.002, k / (steps - 1) of the way, the first time exactly t_max.
  function timeGrid(path, steps, spacing = "uniform", sigmaMax) {
    let tMax = path.tMax;
    if (sigmaMax !== undefined && sigmaMax !== null) tMax = Math.min(path.tMax, tOfEdmSigma(path, sigmaMax));
    const ts = new Float64Array(steps + 1);
    if (spacing === "uniform") {
      for (let k = 0; k < steps; k++) ts[k] = tMax * (1 - k / steps);
    } else {
      const tMin = tOfEdmSigma(path, EDM_SIGMA_MIN);
      const lamOf = (t) => 2 * (Math.log(path.alpha(t)) - Math.log(path.sigma(t)));
      if (!Number.isFinite(lamOf(tMax))) throw new Error(`timeGrid: ${spacing} needs a finite noise level at t_max`);
      const denom = Math.max(steps - 1, 1);
      for (let k = 0; k < steps; k++) {
        const f = k / denom;
        if (spacing === "log-snr") {
          const l0 = lamOf(tMax), l1 = lamOf(tMin);
          ts[k] = path.tOfLogSnr(l0 + f * (l1 - l0));
        } else if (spacing === "karras") {
          const hi = (path.sigma(tMax) / path.alpha(tMax)) ** (1 / KARRAS_RHO);
          const lo = (path.sigma(tMin) / path.alpha(tMin)) ** (1 / KARRAS_RHO);
          ts[k] = path.tOfLogSnr(-2 * KARRAS_RHO * Math.log(hi + f * (lo - hi)));
        } else throw new Error(`timeGrid: unknown spacing ${spacing}`);
      }
      ts[0] = tMax;
    }
    ts[steps] = 0;
    return ts;
  }

  // E[x0 | x_t] for the mixture at any (alpha, sigma), from its own closed form (finite where alpha = 0):
  // x_t | k ~ N(alpha mu_k, v_k I), v_k = alpha^2 s_k^2 + sigma^2, and
  // E[x0 | x_t, k] = mu_k + alpha s_k^2 (x_t - alpha mu_k) / v_k (diffusion_core.mixture.GaussianMixture.x0).
  function mixtureX0(mixture, a, s, x, out, only) {
    return mixtureAverage(mixture, a, s, x, out, only,
                          (k, xc, mc, v) => mc + a * mixture.stds[k] ** 2 / v * (xc - a * mc));
  }

  // The grid's alpha, sigma and a denoiser (x, k) -> {x0, eps} at grid time k: an exact network with the
  // library's target "x0" read as Denoiser does, eps = (x_t - alpha x0) / sigma. Guidance as on the DDPM path,
  // applied to both predictions (ClassifierFreeGuidance): x0 = x0_c + (s - 1)(x0_c - x0_u), and eps likewise.
  function onGrid(path, ts) {
    const alpha = Float64Array.from(ts, (t) => path.alpha(t)), sigma = Float64Array.from(ts, (t) => path.sigma(t));
    return { ts, alpha, sigma, n: ts.length - 1 };
  }

  function pathDenoiser(mixture, g, guidance) {
    const guided = guidance && guidance.label !== undefined && guidance.label !== null;
    return function (x, k) {
      const a = g.alpha[k], s = g.sigma[k], n = x.length;
      const epsOf = (x0) => Float64Array.from(x0, (v, p) => (x[p] - a * v) / s);
      const x0u = mixtureX0(mixture, a, s, x, new Float64Array(n));
      if (!guided) return { x0: x0u, eps: epsOf(x0u) };
      const x0c = mixtureX0(mixture, a, s, x, new Float64Array(n), guidance.label);
      const epsU = epsOf(x0u), epsC = epsOf(x0c), w = guidance.scale - 1;
      const x0 = new Float64Array(n), eps = new Float64Array(n);
      for (let p = 0; p < n; p++) {
        eps[p] = epsC[p] + w * (epsC[p] - epsU[p]);
        x0[p] = x0c[p] + w * (x0c[p] - x0u[p]);
      }
      return { x0, eps };
    };
  }

  // sample_euler (DDIM with eta = 0 on any path): x_s = alpha_s x0_hat + sigma_s eps_hat.
  function euler(model, g, xT) {
    const traj = [Float64Array.from(xT)];
    let x = Float64Array.from(xT);
    for (let k = 0; k < g.n; k++) {
      const { x0, eps } = model(x, k), next = new Float64Array(x.length);
      for (let p = 0; p < x.length; p++) next[p] = g.alpha[k + 1] * x0[p] + g.sigma[k + 1] * eps[p];
      x = next;
      traj.push(x);
    }
    return traj;
  }

  // sample_heun (Karras et al. 2022, Algorithm 1) in x / alpha and sigma / alpha: an Euler predictor and a
  // trapezoidal corrector at the next grid time, the last step (to sigma = 0) Euler only, giving x0_hat;
  // 2N - 1 evaluations. The grid must start where alpha > 0 (not t = 1 on rectified flow).
  function heun(model, g, xT) {
    if (g.n > 1 && !(g.alpha[0] > 0)) throw new Error("heun: x / alpha is undefined where alpha = 0");
    const sig = Float64Array.from(g.sigma, (s, k) => s / g.alpha[k]);
    const traj = [Float64Array.from(xT)];
    let x = Float64Array.from(xT);
    for (let k = 0; k < g.n; k++) {
      const x0 = model(x, k).x0;
      if (k === g.n - 1) { x = x0; traj.push(x); break; }
      const a = g.alpha[k], aS = g.alpha[k + 1], s = sig[k], sS = sig[k + 1], n = x.length;
      const xb = new Float64Array(n), dCur = new Float64Array(n), xbEuler = new Float64Array(n);
      for (let p = 0; p < n; p++) {
        xb[p] = x[p] / a;
        dCur[p] = (xb[p] - x0[p]) / s;
        xbEuler[p] = xb[p] + (sS - s) * dCur[p];
      }
      const x0Next = model(Float64Array.from(xbEuler, (v) => aS * v), k + 1).x0, next = new Float64Array(n);
      for (let p = 0; p < n; p++) {
        const dNext = (xbEuler[p] - x0Next[p]) / sS;
        next[p] = aS * (xb[p] + (sS - s) * (0.5 * dCur[p] + 0.5 * dNext));
      }
      x = next;
      traj.push(x);
    }
    return traj;
  }

  // The grid the page uses on a continuous path unless told otherwise: rectified flow "uniform" from t = 1
  // (Heun from t = 80/81, where sigma / alpha = 80, since x / alpha is undefined at t = 1); EDM "karras"
  // (rho = 7) from sigma = 80 to 0.002.
  function defaultGrid(pathKey, sampler) {
    if (pathKey === "edm") return { spacing: "karras" };
    return sampler === "heun" ? { spacing: "uniform", sigmaMax: EDM_SIGMA_MAX } : { spacing: "uniform" };
  }

  function grid(o) {
    const path = PATHS[o.path];
    if (!path) throw new Error(`path: unknown ${o.path}`);
    const d = defaultGrid(o.path, o.sampler);
    const spacing = o.spacing || d.spacing, sigmaMax = o.sigmaMax !== undefined ? o.sigmaMax : d.sigmaMax;
    return onGrid(path, timeGrid(path, o.steps, spacing, sigmaMax));
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

  // One call for the page and the tests: options {path, schedule, T, sampler, steps, eta, variance,
  // guidance: {label, scale}, mixture: {weights, means (flat), stds, labels}, xT, noise(i) or seed}.
  // path "ddpm" (the default) walks a DDPM schedule; "rectified-flow" and "edm" a time grid (spacing and
  // sigmaMax as time_grid's, defaults from defaultGrid), with sampler "euler" or "heun". On those, xT is the
  // state at the grid's first time (the caller scales it: 80 z on EDM).
  function sample(o) {
    if (o.path && o.path !== "ddpm") {
      const g = grid(o), model = pathDenoiser(o.mixture, g, o.guidance);
      if (o.sampler === "euler") return euler(model, g, o.xT);
      if (o.sampler === "heun") return heun(model, g, o.xT);
      throw new Error(`sampler: ${o.sampler} is not a sampler of ${o.path} (euler, heun)`);
    }
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
                      denoiser, ddpm, ddim, dpmpp2m, rng, sampleMixture, sample,
                      PATHS, KARRAS_RHO, EDM_SIGMA_MIN, EDM_SIGMA_MAX, tOfEdmSigma, timeGrid, mixtureX0,
                      onGrid, pathDenoiser, euler, heun, defaultGrid, grid };
})(typeof window !== "undefined" ? window : globalThis);
