"""Figures for docs/score/guidance.md."""
from figures import figure

PI, MU, SD = (0.4, 0.6), (-0.5, 0.5), 0.5   # two overlapping classes, p(x0 | c) = N(MU[c], SD^2)
N_SAMPLES, STEPS = 10_000, 30


class _ExactNet:
    """The exact noise predictions E[eps | x_t, c] (labels 0, 1) and E[eps | x_t] (label 2, the null label)."""

    def __init__(self, schedule):
        import types

        import torch

        self.config = types.SimpleNamespace(num_classes=2)
        self.ab = schedule.alphas_cumprod.to(torch.float64)
        self.log_pi = torch.tensor(PI, dtype=torch.float64).log()
        self.mu = torch.tensor(MU, dtype=torch.float64)

    def __call__(self, x, t, labels):
        import torch

        ab = self.ab[t].reshape(-1, 1)
        a, sig = ab.sqrt(), (1 - ab).sqrt()
        var = ab * SD**2 + sig**2
        eps_k = sig * (x - a * self.mu) / var
        r = torch.softmax(self.log_pi - 0.5 * (x - a * self.mu) ** 2 / var, dim=1)
        cond = eps_k.gather(1, labels.clamp(max=1).reshape(-1, 1))
        return torch.where(labels.reshape(-1, 1) == 2, (r * eps_k).sum(1, keepdim=True), cond)


def _normal(x, m, v):
    import numpy as np

    return np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)


def _tilted(grid, c, scale):
    """p(x0 | c) p(c | x0)^(scale - 1), normalized on the grid (trapezoid rule)."""
    import numpy as np

    joint = np.stack([PI[k] * _normal(grid, MU[k], SD**2) for k in (0, 1)])
    post = joint[c] / joint.sum(0)
    p = _normal(grid, MU[c], SD**2) * post ** (scale - 1)
    return p / np.trapezoid(p, grid)


def cfg_samples(scale, c=1):
    """N_SAMPLES deterministic CFG samples of class c: DPM-Solver++(2M), STEPS log-SNR steps, cosine schedule."""
    import torch
    from diffusion_core import ClassifierFreeGuidance, Diffusion, NoiseSchedule, dpmpp_2m_sample

    schedule = NoiseSchedule.cosine(1000, dtype=torch.float64)
    x_T = torch.randn(N_SAMPLES, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = _ExactNet(schedule)
    model = net if scale == 1 else ClassifierFreeGuidance(net, scale)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small elementwise tensors: on a busy 2-core machine one thread is much faster
    try:
        out = dpmpp_2m_sample(model, Diffusion(schedule), x_T, steps=STEPS, spacing="log-snr", progress=False,
                              labels=torch.full((N_SAMPLES,), c))
    finally:
        torch.set_num_threads(threads)  # the build draws other figures in this process
    return out.sample[:, 0].numpy()


def w1_to_density(samples, grid, p):
    """Wasserstein-1 distance between the samples and the density p on the grid: the area between the CDFs."""
    import numpy as np

    F = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(grid))])
    F /= F[-1]
    Fn = np.searchsorted(np.sort(samples), grid, side="right") / samples.size
    noise = np.sqrt(2 / (np.pi * samples.size)) * np.trapezoid(np.sqrt(F * (1 - F)), grid)
    return float(np.trapezoid(np.abs(Fn - F), grid)), float(noise)


@figure(alt="Left: histograms of class-1 samples drawn with classifier-free guidance at scales 1, 2 and 4, each "
            "over the curve of the tilted density p(x|c) p(c|x)^(s-1); at scale 1 histogram and curve agree, at "
            "2 and 4 the histograms sit further right and are narrower than their curves. Right: at one noise "
            "level, the guided score against the score of the noised tilted density; the two curves differ.",
        caption="Two overlapping classes, $p(c) = (0.4, 0.6)$, $p(x_0 \\mid c) = \\mathcal{N}(\\mp 0.5, 0.5^2)$, "
                "with the exact noise predictions (no network). Left: 10,000 deterministic CFG samples of class "
                "1 (DPM-Solver++(2M), 30 log-SNR steps, cosine schedule) against the tilted density "
                "$p(x \\mid c)\\,p(c \\mid x)^{s-1}$; the legend gives the Wasserstein-1 distance, and the "
                "distance expected from sampling noise alone. Right: at $\\bar\\alpha_t = 0.5$ and $s = 4$, the "
                "guided score is not the score of the tilted density noised to that level.")
def cfg_vs_tilted():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(-4, 5, 3001)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, scale in enumerate((1, 2, 4)):
        x = cfg_samples(scale)
        p = _tilted(grid, 1, scale)
        w1, noise = w1_to_density(x, grid, p)
        color = f"C{k}"
        ax.hist(x, bins=120, range=(-2, 3), density=True, histtype="stepfilled", alpha=0.3, color=color)
        ax.plot(grid, p, color=color, lw=1.6,
                label=f"$s = {scale}$: $W_1$ = {w1:.3f} (noise {noise:.3f})")
    ax.set_xlim(-2, 3)
    ax.set_xlabel("$x_0$")
    ax.set_title("CFG samples (histograms) vs tilted density (curves)")
    ax.legend(frameon=False, fontsize=8, loc="upper left")

    # one noise level: the guided score against the score of the noised tilted density
    ab, scale = 0.5, 4
    a, sig2 = np.sqrt(ab), 1 - ab
    xs = np.linspace(-3, 3.5, 801)
    var = ab * SD**2 + sig2
    comps = np.stack([PI[k] * _normal(xs, a * MU[k], var) for k in (0, 1)])
    score_c = -(xs - a * MU[1]) / var
    score_u = (comps * -(xs - a * np.array(MU)[:, None]) / var).sum(0) / comps.sum(0)
    guided = scale * score_c - (scale - 1) * score_u
    x0 = np.linspace(-6, 7, 2601)
    p0 = _tilted(x0, 1, scale)
    kernel = _normal(xs[:, None], a * x0[None, :], sig2)
    pt = np.trapezoid(kernel * p0[None, :], x0, axis=1)
    dpt = np.trapezoid(kernel * (-(xs[:, None] - a * x0[None, :]) / sig2) * p0[None, :], x0, axis=1)
    tilted_score = dpt / pt
    bx.plot(xs, guided, color="C2", label="guided score $s\\nabla\\log p_t(x|c) - (s-1)\\nabla\\log p_t(x)$")
    bx.plot(xs, tilted_score, color="k", ls="--", label="score of the noised tilted density")
    bulk = (pt / pt.max()) > 0.01
    gap = np.max(np.abs(guided - tilted_score)[bulk])
    bx.set_title(f"$\\bar\\alpha_t = {ab}$, $s = {scale}$: largest gap {gap:.2f} where $p_t > 1\\%$ of its peak",
                 fontsize=9)
    bx.set_xlabel("$x_t$")
    bx.set_ylabel("score")
    bx.legend(frameon=False, fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return fig
