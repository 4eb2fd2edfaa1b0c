"""The timed functions: our training step and samplers, and the diffusers peers built to match.

Every workload is built from a :class:`~benchmarks.matrix.Case` and exposes

* ``__call__()``: the function that is timed (one training step, one sampling step, one whole sample,
  one q(x_t | x_0) draw); on CUDA the caller synchronizes inside the timed call;
* ``probe()``: the network output (or noised batch) on fixed inputs, in float32, with dropout off,
  used by the correctness guard against the fp32 eager build of the same case.

Networks start from ``torch.manual_seed(0)``; the layers DDPM zero-initialises are re-initialised
(see :func:`unzero`) so the guard compares non-trivial outputs. Weights do not change the cost.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_core import (ClassifierFreeGuidance, Diffusion, NoiseSchedule, ddim_sample, ddpm_sample,
                            dpmpp_2m_sample, heun_sample, training_losses)
from diffusion_core.forward import q_sample
from diffusion_core.nn import build_unet, get_preset
from diffusion_core.train import EMA

from .hardware import DTYPES
from .matrix import GUIDANCE_SCALE, NUM_CLASSES, SOLVER_STEPS, Case

LR, EMA_DECAY, GRAD_CLIP, T = 2e-4, 0.9999, 1.0, 1000
QSAMPLE_SHAPE = (3, 32, 32)  # CIFAR-10 images


def autocast(case: Case, device: torch.device):
    """Autocast to the case's precision; fp32 runs without autocast."""
    if case.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[case.precision])


def image_shape(preset: str) -> tuple[int, int, int]:
    cfg = get_preset(preset)
    return cfg.in_channels, cfg.image_size, cfg.image_size


def unzero(model: nn.Module) -> nn.Module:
    """Re-initialise every conv/linear whose weight is all zeros (DDPM's zero-init layers)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.any():
            m.reset_parameters()
    return model


def diffusers_config(preset: str) -> dict:
    """UNet2DModel arguments with our preset's architecture (Ho et al.: attention at 16x16 for CIFAR-10)."""
    cfg = get_preset(preset)
    attn = [res in cfg.attention_resolutions for res in cfg.resolutions]
    return dict(
        sample_size=cfg.image_size, in_channels=cfg.in_channels, out_channels=cfg.model_out_channels,
        block_out_channels=tuple(cfg.base_channels * m for m in cfg.channel_mults),
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        attention_head_dim=cfg.base_channels * max(cfg.channel_mults) // cfg.num_heads if cfg.num_heads > 1 else None,
        norm_num_groups=cfg.norm_groups, norm_eps=1e-6, dropout=cfg.dropout,
        flip_sin_to_cos=False, freq_shift=1, downsample_padding=1,
    )


def build_net(kind: str, preset: str, device: torch.device, channels_last: bool = False,
              num_classes: int = 0) -> nn.Module:
    """Our UNet (``kind == "ours"``, class-conditional with ``num_classes`` > 0) or diffusers' UNet2DModel with the
    same architecture, seeded."""
    torch.manual_seed(0)
    if kind == "diffusers":
        from diffusers import UNet2DModel

        net: nn.Module = UNet2DModel(**diffusers_config(preset))
    else:
        net = unzero(build_unet(get_preset(preset, num_classes=num_classes) if num_classes else preset))
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def compiled(net: nn.Module, case: Case) -> nn.Module:
    if not case.compile:
        return net
    # dynamic=False: the guard's small probe batch must not turn the timed graph's batch size symbolic.
    return torch.compile(net, mode=None if case.compile == "default" else case.compile, dynamic=False)


def network_alone_compiled(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` alone compiled for a sampling loop with a fixed batch shape (``fullgraph=True``, static shapes): on
    CUDA ``mode="reduce-overhead"``, a CUDA graph of the network replayed at every call (what the library's former
    ``compile_for_sampling`` did); plain ``torch.compile`` elsewhere."""
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    return torch.compile(model.eval(), mode=mode, fullgraph=True, dynamic=False)


def call_net(net: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Network output as a tensor, for our ``model(x, t)`` / ``model(x, t, labels)`` and diffusers' ``UNet2DModel``."""
    out = net(x, t) if labels is None else net(x, t, labels)
    return out.sample if hasattr(out, "sample") else out


def fixed_batch(shape: tuple[int, ...], batch: int, device: torch.device, channels_last: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).clamp(-1, 1).to(device)
    t = torch.randint(0, T, (batch,), generator=g).to(device)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), t


class QSample:
    """q(x_t | x_0) with the noise drawn inside: ours (``q_sample``) or diffusers' ``add_noise(x0, randn_like(x0), t)``,
    eager or under ``torch.compile``.

    ``qsample_given``: the same op with the noise drawn beforehand (what is left without the RNG).
    """

    def __init__(self, case: Case, device: torch.device):
        self.case, self.device = case, device
        dtype = DTYPES[case.precision]
        self.x0, self.t = fixed_batch(QSAMPLE_SHAPE, case.batch, device, False)
        self.x0 = self.x0.to(dtype)
        self.given = None
        if case.workload == "qsample_given":
            self.given = torch.randn(self.x0.shape, generator=torch.Generator().manual_seed(4)).to(device, dtype)
        # Bytes that must move: read x0 (and the given noise), write x_t.
        self.bytes = (2 if self.given is None else 3) * self.x0.numel() * self.x0.element_size()
        self.drawn = self.x0.numel() if self.given is None else 0  # standard normals drawn per call
        if case.impl == "ours":
            self.schedule = NoiseSchedule.linear(T, device=device)
            fn = lambda x0, t, noise=None: q_sample(self.schedule, x0, t, noise)  # noqa: E731
        else:
            from diffusers import DDPMScheduler

            sched = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
            fn = lambda x0, t, noise=None: sched.add_noise(  # noqa: E731
                x0, torch.randn_like(x0) if noise is None else noise, t)
        # Compiled rows compile the whole op, ours and diffusers' alike.
        self.fn = torch.compile(fn, dynamic=False) if case.compile else fn

    def __call__(self) -> torch.Tensor:
        return self.fn(self.x0, self.t, self.given)

    def probe(self, n: int | None = None) -> torch.Tensor:
        """q(x_t | x_0) of the whole batch with fixed noise (``n`` is ignored: the op is cheap)."""
        g = torch.Generator().manual_seed(2)
        noise = torch.randn(self.x0.shape, generator=g).to(self.device, self.x0.dtype)
        return self.fn(self.x0, self.t, noise).float()

    def implied_noise(self) -> torch.Tensor:
        """(x_t - sqrt(abar) x0) / sqrt(1 - abar) of one timed-path draw: must look like N(0, I)."""
        sched = NoiseSchedule.linear(T, dtype=torch.float64, device=self.device)
        a = sched.sqrt_alphas_cumprod[self.t].view(-1, 1, 1, 1)
        s = sched.sqrt_one_minus_alphas_cumprod[self.t].view(-1, 1, 1, 1)
        return (self().double() - a * self.x0.double()) / s


def fused_ok(device: torch.device) -> bool | None:
    return True if device.type == "cuda" else None


class TrainStep:
    """One whole training step: noise, U-Net prediction, loss, backward, clip, AdamW, EMA.

    ``ours``: ``training_losses`` over ``Diffusion(NoiseSchedule.linear(1000))``, our EMA.
    ``diffusers``: their UNet2DModel, ``DDPMScheduler.add_noise``, MSE, their ``EMAModel`` (foreach).
    Both: AdamW (fused on CUDA, foreach on CPU), ``clip_grad_norm_(1.0)``, a GradScaler for fp16.
    """

    def __init__(self, case: Case, device: torch.device):
        self.case, self.device, self.ours = case, device, case.impl == "ours"
        self.model = build_net("ours" if self.ours else "diffusers", case.preset, device, case.channels_last).train()
        self.net = compiled(self.model, case)
        self.x0, self.t_probe = fixed_batch(image_shape(case.preset), case.batch, device, case.channels_last)
        # Fused AdamW on CUDA, foreach on the CPU; the meta device (FLOP counting) takes the defaults.
        fused, self.foreach = device.type == "cuda", True if device.type == "cpu" else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, fused=fused, foreach=self.foreach)
        self.scaler = torch.amp.GradScaler(device.type, enabled=case.precision == "fp16")
        if self.ours:
            self.diffusion = Diffusion(NoiseSchedule.linear(T)).to(device)
            self.ema = EMA(self.model, EMA_DECAY)
        else:
            from diffusers import DDPMScheduler
            from diffusers.training_utils import EMAModel

            self.sched = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
            self.ema = EMAModel(self.model.parameters(), decay=EMA_DECAY, foreach=True)

    def loss(self) -> torch.Tensor:
        with autocast(self.case, self.device):
            if self.ours:
                return training_losses(self.net, self.diffusion, self.x0).loss.mean()
            noise = torch.randn_like(self.x0)
            t = torch.randint(0, T, (self.x0.shape[0],), device=self.device)
            noisy = self.sched.add_noise(self.x0, noise, t)
            pred = self.net(noisy, t, return_dict=False)[0]
            return F.mse_loss(pred.float(), noise.float())

    def __call__(self) -> torch.Tensor:
        loss = self.loss()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP, foreach=self.foreach or fused_ok(self.device))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.ours:
            self.ema.update(self.model)
        else:
            self.ema.step(self.model.parameters())
        return loss.detach()

    @torch.no_grad()
    def probe(self, n: int | None = None) -> torch.Tensor:
        """Network output in eval mode (dropout off) on the first ``n`` of a fixed (x_t, t), under this case's autocast."""
        self.model.eval()
        try:
            with autocast(self.case, self.device):
                return call_net(self.net, self.x0[:n], self.t_probe[:n]).float()
        finally:
            self.model.train()


class Sampler:
    """Reverse process: one DDIM step (``step``), DDPM with 1000 steps (``ddpm``), DDIM-50 (``ddim``),
    DPM-Solver++(2M) with 20 steps (``dpmpp2m``), EDM Heun with 10 steps (``heun``, 19 network calls), and DDIM-50
    on a class-conditional network with classifier-free guidance (``ddim_cfg``) or without (``ddim_cond``).

    ``ours``: our samplers. ``diffusers``: their DDPMScheduler / DDIMScheduler / DPMSolverMultistepScheduler /
    HeunDiscreteScheduler loop calling OUR network (the ratio isolates the sampler). ``diffusers-unet``: their
    scheduler loop and their UNet2DModel.

    The solver peers visit the timesteps ours visits (``timesteps=`` of their ``set_timesteps``), see
    :meth:`_solver_scheduler`.
    """

    def __init__(self, case: Case, device: torch.device):
        self.case, self.device = case, device
        kind = "diffusers" if case.impl == "diffusers-unet" else "ours"
        self.model = build_net(kind, case.preset, device, case.channels_last,
                               NUM_CLASSES if case.conditional else 0).eval().requires_grad_(False)
        # CUDA-graph rows compile the network alone (network_alone_compiled), as diffusers' rows do; ours' update
        # still runs eagerly here, unlike `diffusion-core sample --compile` (ddim_sample/ddpm_sample compile=True:
        # network and update in one graph).
        self.net = (network_alone_compiled(self.model, device) if case.compile == "reduce-overhead"
                    else compiled(self.model, case))
        self.x_T, self.t_probe = fixed_batch(image_shape(case.preset), case.batch, device, case.channels_last, seed=3)
        # Class labels 0, 1, ..., K-1, 0, ... for the conditional workloads (the guard's probe uses them too).
        self.labels = (torch.arange(case.batch, device=device) % NUM_CLASSES) if case.conditional else None
        self.steps = {"step": 1, "ddpm": T, "ddim": 50, "ddim_cfg": 50, "ddim_cond": 50, **SOLVER_STEPS}[case.workload]
        diffusion = Diffusion(NoiseSchedule.linear(T))
        # linspace for DPM-Solver++(2M) (its default); Karras (EDM eq. 5, rounded to timesteps) for Heun, as EDM runs it
        self.spacing = "karras" if case.workload == "heun" else "linspace"
        if case.impl == "ours":
            # A schedule already respaced to the step count, so the sampler does no respacing per call. On the meta
            # device (FLOP counting: only the network's probe runs) the schedule stays on the CPU, its tables
            # having no values there.
            respaced = diffusion if case.workload == "ddpm" else diffusion.respaced(self.steps, self.spacing)
            self.diffusion = respaced if device.type == "meta" else respaced.to(device)
            self.sample = {"ddpm": ddpm_sample, "dpmpp2m": dpmpp_2m_sample, "heun": heun_sample}.get(case.workload,
                                                                                                    ddim_sample)
            # Guidance wraps the (possibly compiled) network: one call at twice the batch per evaluation.
            self.model_fn = ClassifierFreeGuidance(self.net, GUIDANCE_SCALE) if case.workload == "ddim_cfg" else self.net
        elif case.workload in SOLVER_STEPS:
            self._solver_scheduler(diffusion.respaced(self.steps, self.spacing))
        else:
            from diffusers import DDIMScheduler, DDPMScheduler

            if case.workload == "ddpm":
                self.sched = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                           variance_type="fixed_large", clip_sample=False)
            else:
                self.sched = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                           clip_sample=False, timestep_spacing="linspace")
            self.sched.set_timesteps(self.steps)
            self.timesteps = [(t, t.to(device)) for t in self.sched.timesteps]
            self.x_start = self.x_T

    def _solver_scheduler(self, respaced: Diffusion) -> None:
        """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2) or HeunDiscreteScheduler over the linear
        schedule, given OUR visited timesteps (``set_timesteps(timesteps=...)``, descending).

        DPM-Solver++(2M): ``final_sigmas_type="zero"`` (the last step, from our lowest timestep 0 to clean data, is
        their first-order final step, as ours) and ``lower_order_final=True`` (only active below 15 steps in both).
        Heun: their timesteps are ours with every one after the first repeated (the corrector's evaluation), 2N - 1
        calls; the last step to sigma = 0 is Euler. Their state is EDM's x / alpha, so the start is our x_T scaled by
        sqrt(sigma_max^2 + 1) = 1 / alpha at our first timestep (not their ``init_noise_sigma``, which is sigma_max
        for custom timesteps), and the result is x_0 in both."""
        self.visited = visited = [int(t) for t in respaced.schedule.timesteps.flip(0)]  # descending, original
        if self.case.workload == "dpmpp2m":
            from diffusers import DPMSolverMultistepScheduler

            self.sched = DPMSolverMultistepScheduler(
                num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                algorithm_type="dpmsolver++", solver_order=2,
                prediction_type="epsilon", thresholding=False, lower_order_final=True, final_sigmas_type="zero")
            self.sched.set_timesteps(timesteps=visited, device=self.device)
            self.x_start = self.x_T
        else:
            from diffusers import HeunDiscreteScheduler

            # Their Heun's default betas are Stable Diffusion's (0.00085 .. 0.012): give DDPM's linear ones, as ours.
            self.sched = HeunDiscreteScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02,
                                               beta_schedule="linear", prediction_type="epsilon")
            self.sched.set_timesteps(timesteps=visited, device=self.device)
            self.x_start = self.x_T * float((1 + self.sched.sigmas.max().double() ** 2).sqrt())
        self.timesteps = [(t, t.to(self.device)) for t in self.sched.timesteps]
        assert sorted({int(t) for t, _ in self.timesteps}, reverse=True) == visited, (visited, self.sched.timesteps)

    @torch.no_grad()
    def __call__(self) -> torch.Tensor:
        g = torch.Generator(self.device).manual_seed(0)
        wl = self.case.workload
        with autocast(self.case, self.device):
            if self.case.impl == "ours":
                kw = {} if wl == "ddpm" else {"steps": self.steps}
                if wl in SOLVER_STEPS:
                    kw["spacing"] = self.spacing  # the schedule is respaced already: no respacing per call
                if wl == "heun":
                    kw["sigma_max"] = None  # every respaced index from the top, the timesteps the peer is given
                if self.labels is not None:
                    kw["labels"] = self.labels
                return self.sample(self.model_fn, self.diffusion, self.x_T, generator=g, progress=False, **kw).sample
            # Per call, as their pipelines do (and ours does inside its sampler): the solvers' state (step index, past
            # outputs) reset, DDIM's and DDPM's timesteps set.
            if wl in SOLVER_STEPS:
                self.sched.set_timesteps(timesteps=self.visited, device=self.device)
            else:
                self.sched.set_timesteps(self.steps)
            x = self.x_start
            heun = wl == "heun"
            for t, t_dev in self.timesteps:
                inp = self.sched.scale_model_input(x, t) if heun else x
                out = call_net(self.net, inp, t_dev).to(x.dtype)
                x = (self.sched.step(out, t, x) if wl in SOLVER_STEPS else self.sched.step(out, t, x, generator=g)).prev_sample
            return x

    @torch.no_grad()
    def probe(self, n: int | None = None) -> torch.Tensor:
        """Network output on the first ``n`` of a fixed (x_t, t) (and labels), under this case's autocast. With
        guidance, the network's one call on the doubled batch [x, x] with labels [c, null], as the sampler makes it."""
        x, t = self.x_T[:n], self.t_probe[:n]
        labels = None if self.labels is None else self.labels[:n]
        if self.case.workload == "ddim_cfg":
            x, t, labels = torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, NUM_CLASSES)])
        with autocast(self.case, self.device):
            return call_net(self.net, x, t, labels).float()


def build(case: Case, device: torch.device):
    """The workload object for ``case`` on ``device``."""
    if case.workload in ("qsample", "qsample_given"):
        return QSample(case, device)
    if case.workload == "train":
        return TrainStep(case, device)
    return Sampler(case, device)
