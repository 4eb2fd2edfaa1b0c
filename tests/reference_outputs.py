"""Reference outputs of the samplers and losses, stored before the continuous-time redesign, so that the redesign
can show it keeps every result of an unchanged setting.

``python tests/reference_outputs.py`` (from the repository root) runs every case and writes
``tests/data/reference_outputs.safetensors``; ``tests/test_reference_outputs.py`` runs them again and compares.
The cases use a deterministic stand-in for a network: the exact noise predictor of an elementwise two-component
Gaussian mixture under the schedule (float64), read in each parameterization, with a smooth extra output for
learned variances and a class-dependent mixture for class conditioning. What the cases pin is the samplers' and
losses' arithmetic, not the network.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import diffusion_core as dc

STORE = Path(__file__).resolve().parent / "data" / "reference_outputs.safetensors"
WEIGHTS, MEANS, SDS = (0.3, 0.7), (-1.0, 0.8), (0.3, 0.4)
NUM_CLASSES = 3  # class c moves both components by 0.5 c; the null label 3 is the unmoved mixture


def mixture_network(diffusion: dc.Diffusion, *, conditional: bool = False):
    """``net(x_t, t_input[, labels])``: the mixture's exact posterior mean read in ``diffusion``'s parameterization
    (eps, x0 or v), elementwise, at the (unspaced) schedule's step ``t_input``; with ``variance=learned_range`` a
    second set of channels ``tanh(x_t) / 2``. Class c moves both components by c / 2.

    The same function as tests/oracles.py's mixture network, kept here in the exact arithmetic the stored outputs
    were made with (eps from x0, the variance from alpha-bar): the oracle's own rounding (eps from its closed form)
    moves heun-spacing-trailing by 5e-12, more than the 1e-12 these cases are compared to."""
    ac = diffusion.schedule.alphas_cumprod.to(torch.float64)
    w, mu, sd = (torch.tensor(v, dtype=torch.float64) for v in (WEIGHTS, MEANS, SDS))

    def net(x, t_input, labels=None):
        shape = (-1, *([1] * (x.ndim - 1)), 1)
        ab = ac[t_input].reshape(shape)
        m = mu if labels is None else mu + (0.5 * labels * (labels < NUM_CLASSES)).to(torch.float64).reshape(shape)
        a, s, xd = ab.sqrt(), (1 - ab).sqrt(), x.to(torch.float64)[..., None]
        var = ab * sd**2 + (1 - ab)  # Var[x_t | component]
        r = torch.softmax(torch.log(w) - 0.5 * torch.log(var) - 0.5 * (xd - a * m) ** 2 / var, dim=-1)
        x0 = (r * (m + a * sd**2 * (xd - a * m) / var)).sum(-1)  # E[x0 | x_t]
        a, s, xd = a[..., 0], s[..., 0], xd[..., 0]
        eps = (xd - a * x0) / s
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[diffusion.parameterization.value]
        if diffusion.learned_variance:
            out = torch.cat([out, 0.5 * torch.tanh(xd)], dim=1)
        return out.to(x.dtype)

    return net if conditional else (lambda x, t_input: net(x, t_input))


SCHEDULES = {
    "linear": lambda T: dc.NoiseSchedule.linear(T, dtype=torch.float64),
    "cosine": lambda T: dc.NoiseSchedule.cosine(T, dtype=torch.float64),
    "quadratic": lambda T: dc.NoiseSchedule.quadratic(T, dtype=torch.float64),
    "sigmoid": lambda T: dc.NoiseSchedule.sigmoid(T, dtype=torch.float64),
    "cosine-ztsnr": lambda T: dc.NoiseSchedule.cosine(T, dtype=torch.float64).rescale_zero_terminal_snr(),
}
SAMPLERS = {"ddpm": dc.ddpm_sample, "ddim": dc.ddim_sample, "dpmpp2m": dc.dpmpp_2m_sample, "heun": dc.heun_sample}


def _cases() -> dict[str, dict]:
    """name -> settings. A covering set, not the full product: every sampler with every parameterization and
    schedule, then each other option varied on its own."""
    cases = {}
    for sampler in SAMPLERS:
        for param in ("eps", "x0", "v"):
            for sched in SCHEDULES:
                if sched == "cosine-ztsnr" and (param == "eps" or sampler in ("dpmpp2m", "heun")):
                    continue  # eps cannot express the last index of a zero-terminal-SNR schedule; nor can log-SNR
                cases[f"{sampler}-{param}-{sched}"] = dict(sampler=sampler, param=param, sched=sched)
        for spacing in ("linspace", "leading", "trailing", "log-snr", "karras"):
            cases[f"{sampler}-spacing-{spacing}"] = dict(sampler=sampler, spacing=spacing, steps=7)
        for clip in ("static", "dynamic"):
            cases[f"{sampler}-clip-{clip}"] = dict(sampler=sampler, clip=clip, param="x0", shape=(6, 1, 3, 3))
        cases[f"{sampler}-guided"] = dict(sampler=sampler, guidance=2.5)
        cases[f"{sampler}-guided-rescaled-v"] = dict(sampler=sampler, guidance=3.0, rescale=0.7, param="v",
                                                    shape=(6, 1, 3, 3))
        cases[f"{sampler}-labels"] = dict(sampler=sampler, conditional=True)
        cases[f"{sampler}-trajectory"] = dict(sampler=sampler, trajectory=True, steps=5)
        cases[f"{sampler}-float32"] = dict(sampler=sampler, dtype="float32")
    for variance in ("fixed_small", "fixed_large", "learned_range"):
        cases[f"ddpm-variance-{variance}"] = dict(sampler="ddpm", variance=variance, steps=None)
    for eta in (0.3, 1.0):
        cases[f"ddim-eta-{eta}"] = dict(sampler="ddim", eta=eta)
    cases["dpmpp2m-no-lower-order-final"] = dict(sampler="dpmpp2m", lower_order_final=False, steps=8)
    cases["ddim-T1000-50"] = dict(sampler="ddim", T=1000, steps=50, sched="linear")
    return cases


def _diffusion(c: dict) -> dc.Diffusion:
    schedule = SCHEDULES[c.get("sched", "cosine")](c.get("T", 40))
    return dc.Diffusion(schedule, parameterization=c.get("param", "eps"), variance=c.get("variance", "fixed_small"),
                        clip=c.get("clip", "none"))


def run_sample_case(c: dict) -> dict[str, torch.Tensor]:
    dtype = getattr(torch, c.get("dtype", "float64"))
    diffusion = _diffusion(c)
    gen = torch.Generator().manual_seed(7)
    x_T = torch.randn(c.get("shape", (8, 2)), generator=gen, dtype=torch.float64).to(dtype)
    conditional = c.get("conditional", False) or "guidance" in c
    model = mixture_network(diffusion, conditional=conditional)
    labels = torch.arange(x_T.shape[0]) % NUM_CLASSES if conditional else None
    if "guidance" in c:
        model = dc.ClassifierFreeGuidance(dc.Denoiser(model), c["guidance"], null_label=NUM_CLASSES,
                                          rescale=c.get("rescale", 0.0))
    kwargs = dict(generator=torch.Generator().manual_seed(11), progress=False, labels=labels,
                  return_trajectory=c.get("trajectory", False))
    if c.get("steps", 6) is not None:
        kwargs["steps"] = c.get("steps", 6)
    if "spacing" in c:
        kwargs["spacing"] = c["spacing"]
    if "eta" in c:
        kwargs["eta"] = c["eta"]
    if "lower_order_final" in c:
        kwargs["lower_order_final"] = c["lower_order_final"]
    if c["sampler"] == "heun":  # heun_sample's defaults became EDM's grid: the cases pin the defaults they were made with
        kwargs.setdefault("spacing", "log-snr")
        kwargs["sigma_max"] = None
    if c["sampler"] in ("ddim", "dpmpp2m", "heun"):
        kwargs.pop("generator")
        if c.get("eta", 0) > 0:
            kwargs["generator"] = torch.Generator().manual_seed(11)
    result = SAMPLERS[c["sampler"]](model, diffusion, x_T, **kwargs)
    out = {"sample": result.sample}
    if result.trajectory is not None:
        out.update(trajectory=result.trajectory, pred_x0=result.pred_x0)
    return out


LOSS_CASES = {
    f"loss-{param}-{loss}-{sched}": dict(param=param, loss_type=loss, sched=sched)
    for param in ("eps", "x0", "v") for loss in ("mse", "l1", "huber") for sched in ("linear", "cosine")
}
LOSS_CASES.update({
    "loss-minsnr-eps": dict(param="eps", min_snr_gamma=5.0), "loss-minsnr-x0": dict(param="x0", min_snr_gamma=5.0),
    "loss-minsnr-v": dict(param="v", min_snr_gamma=5.0),
    "loss-hybrid": dict(param="eps", variance="learned_range", vlb_weight=0.001),
    "loss-hybrid-images": dict(param="eps", variance="learned_range", vlb_weight=0.001, shape=(6, 1, 3, 3)),
    "loss-labels": dict(param="v", conditional=True),
})


def run_loss_case(c: dict) -> dict[str, torch.Tensor]:
    diffusion = _diffusion(c)
    gen = torch.Generator().manual_seed(3)
    shape = c.get("shape", (12, 2))
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64).clamp(-1, 1)
    t = torch.randint(0, diffusion.num_timesteps, (shape[0],), generator=gen)
    t[:3] = torch.tensor([0, 1, diffusion.num_timesteps - 1])  # both ends of the schedule
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    conditional = c.get("conditional", False)
    labels = torch.arange(shape[0]) % (NUM_CLASSES + 1) if conditional else None
    terms = dc.training_losses(mixture_network(diffusion, conditional=conditional), diffusion, x0, t, noise,
                               loss_type=c.get("loss_type", "mse"), min_snr_gamma=c.get("min_snr_gamma"),
                               vlb_weight=c.get("vlb_weight", 0.0), labels=labels)
    return {"loss": terms.loss, "simple": terms.simple, "vlb": terms.vlb}


def all_cases() -> dict[str, tuple]:
    """name -> (runner, settings)."""
    cases = {name: (run_sample_case, c) for name, c in _cases().items()}
    cases.update({name: (run_loss_case, c) for name, c in LOSS_CASES.items()})
    return cases


def main() -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    tensors = {}
    for name, (runner, c) in all_cases().items():
        for key, value in runner(c).items():
            tensors[f"{name}/{key}"] = value.contiguous()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    STORE.parent.mkdir(exist_ok=True)
    save_file(tensors, STORE, metadata={"commit": commit, "torch": torch.__version__,
                                        "diffusion_core": dc.__version__})
    print(f"{len(tensors)} tensors from {len(all_cases())} cases -> {STORE}", file=sys.stderr)


if __name__ == "__main__":
    main()
