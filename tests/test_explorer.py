"""The explorer page (docs/explorer.md): it loads, its controls change the picture, and its JavaScript
samplers give the same samples as diffusion_core to 1e-6.

The JavaScript (docs/javascripts/explorer-core.js) is a second implementation of the library's
schedules, respacing, DDPM, DDIM, DPM-Solver++(2M) and classifier-free guidance, over the exact denoiser
of a Gaussian mixture. Here both implementations get the same x_T and the same noise: the noise the
library's sampler draws from a seeded torch.Generator is drawn again from the same seed, in the same
order (one draw per step, from the noisiest index down, none at index 0), and handed to the page.
The page is served under a sub-path, in Chromium (see conftest.py).

On the continuous paths (rectified flow; EDM's variance-exploding path) the library side is diffusion_core's own
RectifiedFlow / VarianceExploding, time_grid, sample_euler / sample_heun and a Denoiser (target "x0") around an
exact mixture network written here with torch; the page gets the same starting state x_T = sigma(t_0) z and its
own default grid for the path, which must be the library's.
"""
from __future__ import annotations

import json

import pytest
import torch

from cdp import Tab
from diffusion_core import (ClassifierFreeGuidance, Denoiser, Diffusion, NoiseSchedule, RectifiedFlow,
                            VarianceExploding, ddim_sample, ddpm_sample, dpmpp_2m_sample, sample_euler, sample_heun,
                            spaced_timesteps, time_grid)

pytestmark = pytest.mark.browser

MIXTURE = {"weights": [0.5, 0.3, 0.2], "means": [-1.5, 0.0, 1.0, 1.2, 0.8, -1.4],
           "stds": [0.3, 0.5, 0.2], "labels": [0, 1, 1]}
W = torch.tensor(MIXTURE["weights"], dtype=torch.float64)
MU = torch.tensor(MIXTURE["means"], dtype=torch.float64).view(-1, 2)
STD = torch.tensor(MIXTURE["stds"], dtype=torch.float64)
LABEL = torch.tensor(MIXTURE["labels"])
NULL = 2                       # the null label of the two-class network below
B = 64


def exact_eps(schedule: NoiseSchedule, x, t_input, only=None):
    """E[eps | x_t] for the mixture, written with torch (independently of the page's loop over k)."""
    ab = schedule.alphas_cumprod[t_input].view(-1, 1, 1)
    a = ab.sqrt()
    var = ab * STD.view(1, -1, 1) ** 2 + (1 - ab)                 # (B, K, 1)
    diff = x[:, None, :] - a * MU[None]                            # (B, K, 2)
    log_r = W.log()[None, :, None] - var.log() - (diff**2).sum(-1, keepdim=True) / (2 * var)
    if only is not None:
        log_r = log_r.masked_fill((LABEL != only).view(1, -1, 1), float("-inf"))
    return (torch.softmax(log_r, dim=1) * (1 - ab).sqrt() * diff / var).sum(1)


def library_run(kind, sampler, steps, eta=0.0, guide=None):
    """(x_T, noises in the order drawn, the library's samples)."""
    schedule = NoiseSchedule.make(kind, 1000, dtype=torch.float64)
    x_T = torch.randn(B, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = None
    if guide is None:
        def model(x, t):
            return exact_eps(schedule, x, t)
    else:
        def network(x, t, labels):
            out = exact_eps(schedule, x, t)
            for c in (0, 1):
                rows = labels == c
                out[rows] = exact_eps(schedule, x[rows], t[rows], only=c)
            return out
        model = ClassifierFreeGuidance(network, guide["scale"], null_label=NULL)
        labels = torch.full((B,), guide["label"])
    diffusion = Diffusion(schedule)                     # eps prediction, fixed_large variance, no clipping
    kw = {"steps": steps, "progress": False, "labels": labels}
    generator = torch.Generator().manual_seed(7)
    if sampler == "ddpm":
        out = ddpm_sample(model, diffusion, x_T, generator=generator, **kw).sample
    elif sampler == "ddim":
        out = ddim_sample(model, diffusion, x_T, eta=eta, generator=generator, **kw).sample
    else:
        out = dpmpp_2m_sample(model, diffusion, x_T, **kw).sample
    noisy = sampler == "ddpm" or (sampler == "ddim" and eta > 0)
    replay = torch.Generator().manual_seed(7)
    noises = [torch.randn(B, 2, generator=replay, dtype=torch.float64) for _ in range(steps - 1)] \
        if noisy else []
    return x_T, noises, out


CASES = [
    ("linear", "ddim", 20, 0.0, None),
    ("cosine", "ddim", 20, 0.0, None),
    ("cosine", "ddim", 10, 0.6, None),
    ("linear", "ddpm", 50, 0.0, None),
    ("cosine", "ddpm", 1000, 0.0, None),
    ("linear", "dpmpp-2m", 10, 0.0, None),
    ("cosine", "dpmpp-2m", 25, 0.0, None),
    ("cosine", "ddim", 20, 0.0, {"label": 1, "scale": 3.0}),
]

RUN_IN_PAGE = """
(() => {
  const o = %s;
  o.xT = Float64Array.from(o.xT);
  o.noise = (i) => Float64Array.from(o.noises[o.steps - 1 - i]);   // index n-1 first, as drawn
  const trajectory = DCExplorer.sample(o);
  return Array.from(trajectory[trajectory.length - 1]);
})()
"""


@pytest.fixture(scope="module")
def explorer(browser, site_url):
    tab = Tab(browser)
    tab.goto(site_url + "explorer/", timeout=30)
    yield tab
    tab.close()


@pytest.mark.parametrize("kind, sampler, steps, eta, guide", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}{'-eta' if c[3] else ''}{'-guided' if c[4] else ''}"
                              for c in CASES])
def test_javascript_samples_equal_the_librarys(explorer, kind, sampler, steps, eta, guide):
    x_T, noises, expected = library_run(kind, sampler, steps, eta, guide)
    options = {"schedule": kind, "T": 1000, "sampler": sampler, "steps": steps, "eta": eta,
               "mixture": MIXTURE, "guidance": guide, "xT": x_T.flatten().tolist(),
               "noises": [z.flatten().tolist() for z in noises]}
    got = torch.tensor(explorer.js(RUN_IN_PAGE % json.dumps(options), timeout=120),
                       dtype=torch.float64).view(B, 2)
    assert expected.abs().max() > 0.5                  # real samples, not a collapsed output
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the continuous paths

def exact_x0(x, alpha, sigma, only=None):
    """E[x0 | x_t] for the mixture at per-row (alpha, sigma), written with torch from its closed form
    sum_k r_k (mu_k + alpha s_k^2 (x_t - alpha mu_k) / v_k), v_k = alpha^2 s_k^2 + sigma^2 (finite at alpha = 0)."""
    a, s = alpha.reshape(-1, 1, 1), sigma.reshape(-1, 1, 1)
    sd2 = STD.view(1, -1, 1) ** 2
    var = a * a * sd2 + s * s                                       # (B, K, 1)
    diff = x[:, None, :] - a * MU[None]                             # (B, K, 2)
    log_r = W.log()[None, :, None] - var.log() - (diff**2).sum(-1, keepdim=True) / (2 * var)
    if only is not None:
        log_r = log_r.masked_fill((LABEL != only).view(1, -1, 1), float("-inf"))
    return (torch.softmax(log_r, dim=1) * (MU[None] + a * sd2 * diff / var)).sum(1)


# The path, and the time its network input t_in = path.network_time(t) stands for (1000 t; 1/4 ln sigma).
LIBRARY_PATHS = {"rectified-flow": (RectifiedFlow, lambda t_in: t_in / 1000),
                 "edm": (VarianceExploding, lambda t_in: torch.exp(4 * t_in))}


def library_path_run(path_key, sampler, steps, spacing, sigma_max, guide):
    """(x_T, the grid, the library's samples) on a continuous path, the grid from time_grid."""
    make, time_of = LIBRARY_PATHS[path_key]
    path = make()
    ts = time_grid(path, steps, spacing, sigma_max=sigma_max)
    z = torch.randn(B, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_T = path.sigma(ts[:1]) * z            # the start: z at t = 1 (rectified flow), 80 z on EDM

    def network(x, t_in, labels=None):
        t = time_of(t_in)
        a, s = path.alpha(t), path.sigma(t)
        out = exact_x0(x, a, s)             # unconditional (and the null label's rows)
        if labels is not None:
            for c in (0, 1):
                rows = labels == c
                out[rows] = exact_x0(x[rows], a[rows], s[rows], only=c)
        return out

    denoiser, labels = Denoiser(network, path, "x0"), None
    if guide is not None:
        denoiser = ClassifierFreeGuidance(denoiser, guide["scale"], null_label=NULL)
        labels = torch.full((B,), guide["label"])
    run = sample_euler if sampler == "euler" else sample_heun
    return x_T, ts, run(denoiser, x_T, ts, labels=labels, progress=False).sample


# (path, sampler, steps, the library's spacing, its sigma_max, guidance). The page is given only the path, the
# sampler and the steps: its default grids must be these.
PATH_CASES = [
    ("rectified-flow", "euler", 20, "uniform", None, None),
    ("rectified-flow", "heun", 10, "uniform", 80.0, None),      # Heun needs alpha > 0: from t = 80/81
    ("edm", "heun", 18, "karras", None, None),
    ("edm", "euler", 18, "karras", None, None),
    ("edm", "heun", 18, "karras", None, {"label": 1, "scale": 3.0}),
]


@pytest.mark.parametrize("path, sampler, steps, spacing, sigma_max, guide", PATH_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}{'-guided' if c[5] else ''}" for c in PATH_CASES])
def test_javascript_samples_equal_the_librarys_on_the_continuous_paths(explorer, path, sampler, steps, spacing,
                                                                        sigma_max, guide):
    x_T, ts, expected = library_path_run(path, sampler, steps, spacing, sigma_max, guide)
    options = {"path": path, "sampler": sampler, "steps": steps, "mixture": MIXTURE, "guidance": guide,
               "xT": x_T.flatten().tolist(), "noises": []}
    grid = explorer.js(f"Array.from(DCExplorer.grid({json.dumps(options)}).ts)")
    torch.testing.assert_close(torch.tensor(grid, dtype=torch.float64), ts, rtol=1e-12, atol=0)
    got = torch.tensor(explorer.js(RUN_IN_PAGE % json.dumps(options), timeout=120),
                       dtype=torch.float64).view(B, 2)
    assert expected.abs().max() > 0.5                  # real samples, not a collapsed output
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_javascript_time_grids_equal_the_librarys(explorer):
    """The page's time_grid for both paths, every spacing and step counts 1 to 40, to 1e-12 relative."""
    specs = [(p, sp, sm) for p, sm in (("rectified-flow", 80.0), ("edm", None))
             for sp in ("uniform", "log-snr", "karras")] + [("rectified-flow", "uniform", None)]
    got = explorer.js("(() => { const out = {}; for (const [p, sp, sm] of %s) for (let n = 1; n <= 40; n++) "
                      "out[`${p} ${sp} ${sm} ${n}`] = Array.from(DCExplorer.timeGrid(DCExplorer.PATHS[p], n, sp, "
                      "sm === null ? undefined : sm)); return out; })()" % json.dumps(specs), timeout=60)
    for p, sp, sm in specs:
        path = LIBRARY_PATHS[p][0]()
        for n in range(1, 41):
            expected = time_grid(path, n, sp, sigma_max=sm)
            torch.testing.assert_close(torch.tensor(got[f"{p} {sp} {'null' if sm is None else f'{sm:g}'} {n}"],
                                                    dtype=torch.float64), expected, rtol=1e-12, atol=0)


def test_javascript_timesteps_equal_the_librarys_for_every_step_count(explorer):
    """The page's respacing grid is the library's linspace spacing for every step count at T = 1000 (the sample
    cases above reach only a few counts; half-way values are where two ways of computing it part)."""
    got = explorer.js("Array.from({length: 1000}, (_, i) => Array.from(DCExplorer.linspaceTimesteps(1000, i + 1)))",
                      timeout=60)
    for n, grid in enumerate(got, start=1):
        assert grid == spaced_timesteps(1000, n).tolist(), n


def test_the_page_loads_and_a_control_changes_the_picture(explorer):
    pixels = """(() => { const c = document.querySelector('#dc-explorer canvas');
                         return c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                                 .reduce((h, v, i) => (h * 31 + v * (i % 7 + 1)) % 1000000007, 7); })()"""
    status = "document.querySelector('.dc-status').textContent"
    assert "1500 samples" in explorer.js(status)
    before, text_before = explorer.js(pixels), explorer.js(status)
    # Switch the sampler to DDPM through the control itself, as a reader would.
    explorer.js("""(() => { const s = document.querySelector('[data-k="sampler"]');
                            s.value = 'ddpm'; s.dispatchEvent(new Event('input', {bubbles: true})); })()""")
    explorer.js("new Promise(r => setTimeout(r, 600))", timeout=30)      # the page recomputes after 120 ms
    assert "DDPM" in explorer.js(status) and explorer.js(status) != text_before
    assert explorer.js(pixels) != before
    # The forward process: at t = 1000 the points are N(0, I); their spread is about 1.
    explorer.js("""(() => { document.querySelector('input[value="forward"]').click();
                            const t = document.querySelector('[data-k="forwardT"]');
                            t.value = '1000'; t.dispatchEvent(new Event('input', {bubbles: true})); })()""")
    assert "t = 1000" in explorer.js(status)


# ---------------------------------------------------------------- the path control and "Draw your own"

PIXELS = """(() => { const c = document.querySelector('#dc-explorer canvas');
                     return c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                             .reduce((h, v, i) => (h * 31 + v * (i % 7 + 1)) % 1000000007, 7); })()"""
STATUS = "document.querySelector('.dc-status').textContent"
BRUSH = 0.15                   # the page's default brush spread


def _set(tab, key, value):
    """Set a control as a reader does: its value, then the input event the page listens to."""
    tab.js(f"""(() => {{ const s = document.querySelector('[data-k="{key}"]'); s.value = {json.dumps(value)};
                         s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")


def _settle(tab):
    tab.js("new Promise(r => setTimeout(r, 600))", timeout=30)      # the page recomputes after 120 ms


def _mouse(tab, kind, xy, held):
    tab.send("Input.dispatchMouseEvent", {"type": kind, "x": xy[0], "y": xy[1], "button": "left",
                                          "buttons": 1 if held else 0, "clickCount": 1})


def test_the_path_control_and_drawing_your_own_data(browser, site_url):
    tab = Tab(browser)
    try:
        tab.goto(site_url + "explorer/", timeout=30)
        # The path control: each path shows its own samplers, and the status and the picture follow it.
        before, text = tab.js(PIXELS), tab.js(STATUS)
        assert "on the cosine schedule" in text
        _set(tab, "path", "rectified-flow")
        _settle(tab)
        options = "Array.from(document.querySelectorAll('[data-k=\"sampler\"] option'), o => o.value)"
        assert tab.js(options) == ["euler", "heun"]
        status = tab.js(STATUS)
        assert "Euler on rectified flow (t from 1.00 to 0" in status and "20 evaluations" in status, status
        assert tab.js(PIXELS) != before
        _set(tab, "sampler", "heun")
        _settle(tab)
        assert "Heun on rectified flow (t from 0.988 to 0" in tab.js(STATUS)     # from t = 80/81
        rf = tab.js(PIXELS)
        _set(tab, "path", "edm")
        _settle(tab)
        assert tab.js(options) == ["heun", "euler"]
        status = tab.js(STATUS)
        assert "Heun on EDM (σ from 80 to 0.002 on Karras's ρ = 7 grid" in status, status
        assert "step 18 of 18" in status and "35 evaluations" in status, status            # 2N - 1
        assert tab.js(PIXELS) not in (before, rf)
        assert tab.js("document.querySelector('.dc-schedule').hidden") is True
        # The forward process follows the path: EDM's slider is in sigma, up to 80.
        tab.js("document.querySelector('input[value=\"forward\"]').click()")
        _set(tab, "forwardT", "1000")
        assert "Forward process on EDM's path at σ = 80.0" in tab.js(STATUS)
        _set(tab, "forwardT", "0")
        assert "at σ = 0 " in tab.js(STATUS)
        tab.js("document.querySelector('input[value=\"reverse\"]').click()")

        # "Draw your own": nothing drawn yet, and sampling then breaks nothing.
        _set(tab, "data", "draw")
        _settle(tab)
        assert "Nothing drawn yet" in tab.js(STATUS)
        empty = tab.js(PIXELS)
        tab.js("document.querySelector('[data-a=\"sample\"]').click()")
        assert "Nothing drawn yet" in tab.js(STATUS)
        # A stroke from (-2, 1.5) to (2, 1.5) and a click at (0, -2), as real mouse input at the canvas's place.
        left, top, width = tab.js("""(() => { const c = document.querySelector('#dc-explorer canvas');
            c.scrollIntoView({block: 'center'}); const b = c.getBoundingClientRect();
            return [b.left, b.top, b.width]; })()""")

        def at(x, y):
            return left + (x + 4) / 8 * width, top + (4 - y) / 8 * width

        _mouse(tab, "mousePressed", at(-2, 1.5), True)
        for i in range(1, 41):
            _mouse(tab, "mouseMoved", at(-2 + 0.1 * i, 1.5), True)
        _mouse(tab, "mouseReleased", at(2, 1.5), False)
        _mouse(tab, "mousePressed", at(0, -2), True)
        _mouse(tab, "mouseReleased", at(0, -2), False)
        _settle(tab)
        centres = torch.tensor(tab.js("Array.from(DCExplorerPage.state.drawn.means)"), dtype=torch.float64).view(-1, 2)
        stds = tab.js("DCExplorerPage.state.drawn.stds")
        # One dab where the stroke starts and one every 0.25 units along its 4 units: 17, and the click's.
        pixel = 8 / width                                   # one CSS pixel in data units
        assert len(centres) == 18 and stds == [BRUSH] * 18
        stroke, dot = centres[:17], centres[17]
        assert (stroke[:, 1] - 1.5).abs().max() < 2 * pixel and (stroke[0] - torch.tensor([-2, 1.5])).abs().max() < 2 * pixel
        torch.testing.assert_close((stroke[1:] - stroke[:-1]).norm(dim=1), torch.full((16,), 0.25, dtype=torch.float64),
                                   rtol=0, atol=2 * pixel)
        assert (dot - torch.tensor([0.0, -2.0])).abs().max() < 2 * pixel
        status = tab.js(STATUS)
        assert "1500 samples, Heun on EDM" in status, status
        samples = torch.tensor(tab.js("Array.from(DCExplorerPage.state.traj.at(-1))"), dtype=torch.float64).view(-1, 2)
        nearest = torch.cdist(samples, centres).min(dim=1).values
        # An exact draw of one isotropic component of spread s lies at a Rayleigh(s) distance from its centre,
        # median s sqrt(2 ln 2) = 1.18 s, and the nearest drawn centre is at most that far: the median is below
        # 1.18 s for the exact mixture. 2 s leaves room for 18 Heun steps and 1,500 draws (N(0, I) noise is ~1 away).
        assert nearest.median() < 2 * BRUSH, nearest.median()
        # They follow the whole stroke, and the lone dab gets about its weight, 1/18 = 5.6 % of them.
        on_stroke = samples[(samples[:, 1] - 1.5).abs() < 3 * BRUSH]
        assert on_stroke[:, 0].min() < -1.8 and on_stroke[:, 0].max() > 1.8
        share = ((samples - torch.tensor([0.0, -2.0])).norm(dim=1) < 3 * BRUSH).double().mean().item()
        assert 0.02 < share < 0.12, share
        assert tab.js(PIXELS) != empty
        # Clear empties the drawing.
        tab.js("document.querySelector('[data-a=\"clear\"]').click()")
        assert tab.js("DCExplorerPage.state.drawn.weights.length") == 0
        assert "Nothing drawn yet" in tab.js(STATUS) and tab.js(PIXELS) == empty
        assert not [e for e in tab.events("Runtime.exceptionThrown")]
    finally:
        tab.close()
