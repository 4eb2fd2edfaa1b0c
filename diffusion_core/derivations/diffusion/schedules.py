"""Derivations for docs/diffusion/noise-schedules.md."""
import sympy as sp

from diffusion_core.derivations import E, Model, Var, derivation, ordered, random_variables, times

t, T = sp.symbols("t T", positive=True)
k = sp.Symbol("k", integer=True, positive=True)
n_steps = sp.Symbol("t", integer=True, positive=True)
abars, betas = sp.IndexedBase(r"\bar{\alpha}", positive=True), sp.IndexedBase(r"\beta", positive=True)
beta, alpha, btilde = sp.symbols(r"\beta_t \alpha_t \tilde{\beta}_t", positive=True)
abar, abar_prev, lam = sp.symbols(r"\bar{\alpha}_t \bar{\alpha}_{t-1} \lambda_t", positive=True)
snr, snr_prev = sp.symbols(r"\mathrm{SNR}_t \mathrm{SNR}_{t-1}", positive=True)
s = sp.Symbol("s", positive=True)
theta = sp.pi * t / (2 * T)


def cosine_f(u):
    """Nichol & Dhariwal 2021, eq. 17: f(t) = cos^2((t/T + s)/(1 + s) * pi/2)."""
    return sp.cos((u / T + s) / (1 + s) * sp.pi / 2) ** 2


def steps(n):
    return Model(f"$t = {n}$; $\\beta_k = 1 - \\bar\\alpha_k / \\bar\\alpha_{{k-1}}$, "
                 "$\\bar\\alpha_0 = 1$, otherwise any values",
                 bind={n_steps: n, betas[k]: 1 - abars[k] / abars[k - 1]}, facts={abars[0]: 1})


w = sp.Symbol("w", positive=True)
COSINE = Model("$\\bar\\alpha_t = \\cos^2(\\pi t / 2T)$ (no offset) at any $0 < t < T$, "
               "written $\\pi t / 2T = \\arctan w$ with $w > 0$",
               bind={abar: sp.cos(theta) ** 2, t: 2 * T * sp.atan(w) / sp.pi})
LOG_SNR = Model("$\\lambda_t = \\log(\\bar\\alpha_t / (1 - \\bar\\alpha_t))$",
                bind={lam: sp.log(abar / (1 - abar))})
BOUND = Model("$\\tilde\\beta_t = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\beta_t$, "
              "$\\beta_t = 1 - \\alpha_t$, $\\bar\\alpha_t = \\alpha_t\\bar\\alpha_{t-1}$, "
              "$\\mathrm{SNR} = \\bar\\alpha / (1 - \\bar\\alpha)$",
              bind={btilde: (1 - abar_prev) / (1 - abar) * beta, beta: 1 - alpha,
                    abar: alpha * abar_prev, snr: abar / (1 - abar),
                    snr_prev: abar_prev / (1 - abar_prev)})


def library_cosine_alpha_bar():
    """alphas_cumprod of NoiseSchedule.cosine(1000) at index 499 (the paper's t = 500)."""
    import torch
    from diffusion_core import NoiseSchedule
    return NoiseSchedule.cosine(1000, dtype=torch.float64).alphas_cumprod[499]


def library_cosine_log_snr():
    """log SNR of NoiseSchedule.cosine(1000, s=1e-12) (offset ~ 0) at index 249 (t = 250)."""
    import torch
    from diffusion_core import NoiseSchedule
    return NoiseSchedule.cosine(1000, s=1e-12, dtype=torch.float64).snr[249].log()


def linear_schedule_at(index):
    """alpha_t and alpha-bar_{t-1} of NoiseSchedule.linear(1000) at one index."""
    import torch
    from diffusion_core import NoiseSchedule
    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    return {alpha: schedule.alphas[index].item(), abar_prev: schedule.alphas_cumprod_prev[index].item()}


def library_vlb_weight():
    """diffusion_core.vlb.vlb_term of the linear schedule at index 10, unit noise error, in nats."""
    import math

    import torch
    from diffusion_core import Denoiser, Diffusion, NoiseSchedule
    from diffusion_core.vlb import vlb_term
    diffusion = Diffusion(NoiseSchedule.linear(1000, dtype=torch.float64), "eps", "fixed_small")
    t_ = torch.tensor([10])                    # the schedule's index 10: the paper's step t = 11
    x0 = torch.tensor([[0.3]], dtype=torch.float64)
    noise = torch.tensor([[-0.8]], dtype=torch.float64)
    x_t = diffusion.q_sample(x0, t_, noise)

    def network(x, step):                      # a "network" whose noise prediction is off by 1
        return noise + 1

    # the denoiser's time is its path's, the paper's step t = index + 1
    prediction = Denoiser(network, diffusion.path, "eps")(x_t, t_ + 1)
    return vlb_term(diffusion, prediction, x0, x_t, t_) * math.log(2)


@derivation("Any curve of alpha-bar defines the betas, and the product gives it back",
            models=[steps(1), steps(2), steps(3), steps(4)])
def cumulative_product(d):
    d.start(sp.Product(1 - betas[k], (k, 1, n_steps)))
    d.eq(sp.Product(abars[k] / abars[k - 1], (k, 1, n_steps)),
         "$\\beta_k = 1 - \\bar\\alpha_k / \\bar\\alpha_{k-1}$")
    d.eq(abars[n_steps] / abars[0], "the product telescopes")
    d.eq(abars[n_steps], "$\\bar\\alpha_0 = 1$")
    d.numeric(library_cosine_alpha_bar, expr=cosine_f(t) / cosine_f(0), model=Model(), rtol=1e-12,
              label="diffusion_core.NoiseSchedule.cosine(1000).alphas_cumprod at index 499",
              at={t: 500, T: 1000, s: sp.Rational(8, 1000)})


@derivation("Log-SNR of the cosine schedule without offset", models=[COSINE])
def cosine_log_snr(d):
    d.start(sp.log(abar / (1 - abar)))
    d.eq(sp.log(sp.cos(theta) ** 2 / (1 - sp.cos(theta) ** 2)), "$\\bar\\alpha_t = \\cos^2(\\pi t / 2T)$")
    d.eq(sp.log(sp.cos(theta) ** 2 / sp.sin(theta) ** 2), "$\\sin^2 + \\cos^2 = 1$")
    d.eq(-2 * sp.log(sp.tan(theta)), "$\\tan = \\sin / \\cos$, positive for $0 < t < T$")
    d.numeric(library_cosine_log_snr, at={t: 250, T: 1000}, model=Model(), rtol=1e-9,
              label="log of NoiseSchedule.cosine(1000, s=1e-12).snr at index 249")


@derivation("alpha-bar is the logistic sigmoid of the log-SNR", models=[LOG_SNR])
def sigmoid_of_log_snr(d):
    d.start(1 / (1 + sp.exp(-lam)))
    d.eq(1 / (1 + (1 - abar) / abar), "$e^{-\\lambda_t} = (1 - \\bar\\alpha_t) / \\bar\\alpha_t$")
    d.eq(abar, "multiply through by $\\bar\\alpha_t$")


@derivation("The weight of a bound term depends on the schedule only through the SNR",
            models=[BOUND])
def vlb_weight(d):
    d.start(beta**2 / (2 * btilde * alpha * (1 - abar)))
    d.eq(beta / (2 * alpha * (1 - abar_prev)),
         "$\\tilde\\beta_t = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\beta_t$")
    d.eq(times(sp.Rational(1, 2), ordered(snr_prev / snr, -1)),
         "$\\mathrm{SNR}_t = \\frac{\\bar\\alpha_t}{1-\\bar\\alpha_t}$, "
         "$\\bar\\alpha_t = \\alpha_t\\bar\\alpha_{t-1}$, $\\beta_t = 1 - \\alpha_t$")
    d.numeric(library_vlb_weight, at=linear_schedule_at(10), rtol=1e-9,
              label="diffusion_core.vlb.vlb_term (linear schedule, index 10, fixed_small) "
                    "for a unit noise error, in nats")


eps, eps_hat = sp.symbols("epsilon \\hat{\\epsilon}", real=True)
x0, x0_hat, xt = sp.symbols("x_0 \\hat{x}_0 x_t", real=True)
SNR_FORM = Model(BOUND.label + "; $\\epsilon$ and $\\hat\\epsilon$ are the noises that $x_0$ and "
                 "$\\hat x_0$ leave in $x_t$, $\\epsilon = (x_t - \\sqrt{\\bar\\alpha_t}\\,x_0)"
                 "/\\sqrt{1-\\bar\\alpha_t}$",
                 bind={**BOUND.subs,
                       eps: (xt - sp.sqrt(abar) * x0) / sp.sqrt(1 - abar),
                       eps_hat: (xt - sp.sqrt(abar) * x0_hat) / sp.sqrt(1 - abar)})


@derivation("A bound term in SNR form", models=[SNR_FORM])
def snr_form(d):
    weight = beta**2 / (2 * btilde * alpha * (1 - abar))
    d.start(times(weight, (eps - eps_hat) ** 2))
    d.eq(times(weight, snr * (x0 - x0_hat) ** 2),
         "the noise error is $\\sqrt{\\mathrm{SNR}_t}$ times the error of $\\hat x_0$")
    d.eq(times(sp.Rational(1, 2), (snr_prev - snr) * (x0 - x0_hat) ** 2),
         "the weight above, times $\\mathrm{SNR}_t$")


X0, noise = random_variables("x_0 epsilon")
UNIT_PARTS = Model("$x_0$ and $\\epsilon$ with variance 1 (data scaled to unit variance)",
                   facts={E(X0): 0, E(X0**2): 1, E(noise): 0, E(noise**2): 1})


def linear_schedule(index, table):
    """One entry of a table of NoiseSchedule.linear(1000) (float64)."""
    import torch
    from diffusion_core import NoiseSchedule

    return getattr(NoiseSchedule.linear(1000, dtype=torch.float64), table)[index]


@derivation("The signal-to-noise ratio of x_t", models=[UNIT_PARTS])
def snr_definition(d):
    d.start(Var(sp.sqrt(abar) * X0) / Var(sp.sqrt(1 - abar) * noise))
    d.eq(abar / (1 - abar), "variances scale with the square of the factor; both parts have variance 1")
    d.numeric(lambda: linear_schedule(99, "snr"), at={abar: float(linear_schedule(99, "alphas_cumprod"))},
              rtol=1e-12, label="`NoiseSchedule.linear(1000).snr` at index 99")
