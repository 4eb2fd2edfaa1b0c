"""The GPU path, proven on the CPU: no op that forces a device-to-host sync runs in a training step or a
sampling loop, except inside the trainer's named ``host_sync_point``s (log, non-finite check, checkpoint,
preview). On a GPU each such op stalls the CPU until the queue drains; here the same ops are caught by a
``TorchDispatchMode`` that sees every aten call, whatever the device."""
from __future__ import annotations

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import diffusion_core as dc
import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, train
from diffusion_core._sync import in_host_sync_point

aten = torch.ops.aten
# Ops whose result the host must read before it can go on (a Python bool/int/float, or a shape that depends
# on the data).
SYNC_OPS = {aten._local_scalar_dense, aten.item, aten.is_nonzero, aten.nonzero, aten.nonzero_static,
            aten.masked_select, aten._unique2, aten.unique_consecutive, aten.equal, aten.allclose,
            aten.repeat_interleave, aten._assert_async}


# Host-side code, by module and qualified name: argument checks that read values only for CPU tensors (on a GPU
# they skip the check, by design, for this very reason; ``paths.DiscreteVP._index`` checks that a discrete path's
# times are integer steps), and the sampling grid, which is built and checked on the CPU whatever the device
# (``grids.time_grid``, ``step_grid.StepGrid``, before the loop). A read there cannot be a device-to-host sync on a GPU.
_HOST_SIDE = {"diffusion_core._validation": ("check_timesteps", "check_labels", "check_finite_values"),
              "diffusion_core.paths": ("DiscreteVP._index",),
              "diffusion_core.grids": ("time_grid",),
              "diffusion_core.step_grid": ("StepGrid.__init__",),
              "diffusion_core.samplers": ("_edm_sigmas",)}


def _cpu_only_argument_check() -> bool:
    """Whether the op runs inside host-side code (``_HOST_SIDE``)."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if getattr(code, "co_qualname", code.co_name) in _HOST_SIDE.get(frame.f_globals.get("__name__"), ()):
            return True
        frame = frame.f_back
    return False


class NoHostSync(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.allowed: dict[str, int] = {}
        self.checked_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.checked_ops += 1
        if func.overloadpacket in SYNC_OPS:
            reason = in_host_sync_point()
            if reason is not None:
                self.allowed[reason] = self.allowed.get(reason, 0) + 1
            elif not _cpu_only_argument_check():
                raise AssertionError(f"{func} forces a device-to-host sync outside a host_sync_point")
        return func(*args, **(kwargs or {}))


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_mode_catches_a_sync():
    """Control: the mode really fails on a read-back (else the tests below could not fail)."""
    with pytest.raises(AssertionError, match="_local_scalar_dense"), NoHostSync():
        float(torch.ones(3).sum())
    with pytest.raises(AssertionError, match="nonzero"), NoHostSync():
        torch.nonzero(torch.arange(4) > 1)
    with pytest.raises(AssertionError, match="masked_select"), NoHostSync():
        torch.arange(4).masked_select(torch.arange(4) > 1)
    # One blind spot: x[bool_mask] on a CPU tensor computes its nonzero inside the kernel, unseen here (on a GPU
    # it syncs). The library has no boolean-mask indexing in its loops; keep it that way.


CASES = {
    "mlp-fp32": dict(dataset="swiss-roll", model="mlp", precision="fp32"),
    "mlp-fp16-gradscaler": dict(dataset="swiss-roll", model="mlp", precision="fp16"),
    "unet-bf16-channels-last-dropout": dict(dataset="digits", model="digits-8", precision="bf16"),
    "mlp-learned-variance-hybrid-loss": dict(dataset="swiss-roll", model="mlp", precision="fp32",
                                             variance="learned_range", vlb_weight=0.001),
}


@pytest.mark.parametrize("case", list(CASES))
def test_training_loop_syncs_only_at_its_check_points(tmp_path, monkeypatch, case):
    cfg = TrainConfig(**CASES[case], num_timesteps=50, steps=7, batch_size=8, log_every=3, checkpoint_every=5,
                      checkpoint_minutes=0, out_dir=str(tmp_path / "run"))
    mode = NoHostSync()
    real_loop = trainer._Run._loop

    def loop_under_mode(*args, **kwargs):  # setup (data, model, checkpoint reads) is outside: it runs once
        with mode:
            return real_loop(*args, **kwargs)

    monkeypatch.setattr(trainer._Run, "_loop", loop_under_mode)
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    result = train(cfg, progress=False)
    assert result.step == 7 and torch.isfinite(result.losses).all()
    assert mode.checked_ops > 7 * 50  # the mode saw the steps' ops
    # the reads happened, and only where they are documented: logs at 3, 6, 7; checkpoints at 5, 7
    assert set(mode.allowed) == {"non-finite check", "log", "checkpoint"}, mode.allowed


def test_eval_every_reads_back_only_at_its_own_check_point(tmp_path, monkeypatch):
    """``--eval-every``'s sampling and measurement (CPU numpy after one read-back) happen at the "evaluation"
    point, on rank 0, between steps."""
    from diffusion_core.evaluation import training_evaluator

    cfg = TrainConfig(**CASES["mlp-fp32"], num_timesteps=50, steps=4, batch_size=8, log_every=2, checkpoint_every=4,
                      checkpoint_minutes=0, eval_every=2, eval_samples=50, out_dir=str(tmp_path / "run"))
    mode = NoHostSync()
    real_loop = trainer._Run._loop

    def loop_under_mode(*args, **kwargs):
        with mode:
            return real_loop(*args, **kwargs)

    monkeypatch.setattr(trainer._Run, "_loop", loop_under_mode)
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    train(cfg, progress=False, evaluator=training_evaluator)
    assert set(mode.allowed) == {"non-finite check", "log", "checkpoint", "evaluation"}, mode.allowed


@pytest.mark.parametrize("sampler", ["ddim", "ddim-eta", "ddpm"])
@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_sampling_loops_never_sync(sampler, parameterization):
    schedule = dc.NoiseSchedule.cosine(100)
    diffusion = dc.Diffusion(schedule, parameterization, "fixed_small", clip="static")
    torch.manual_seed(0)
    model = dc.nn.build_mlp(dc.nn.MLPConfig(dim=2, hidden=32, depth=2)).eval()
    x_T = torch.randn(16, 2)
    g = torch.Generator().manual_seed(1)
    d = diffusion.respaced(10)  # respacing builds tables once, before the loop
    mode = NoHostSync()
    with mode:
        if sampler == "ddpm":
            out = dc.ddpm_sample(model, d, x_T, generator=g, progress=False, return_trajectory=True)
        else:
            out = dc.ddim_sample(model, d, x_T, steps=10, eta=0.5 if sampler == "ddim-eta" else 0.0, generator=g,
                                 progress=False, return_trajectory=True)
    assert out.trajectory.shape == (11, 16, 2) and mode.checked_ops > 10 * 10
    assert mode.allowed == {"non-finite check": 1}  # the one read-back: the result checked for NaN after the loop


@pytest.mark.parametrize("sampler", ["ddim-eta", "ddpm"])
def test_guided_class_conditional_sampling_never_syncs(sampler):
    """Classifier-free guidance (doubled batch, eq. 6, the rescale's per-example std) adds no read-back."""
    from diffusion_core.guidance import ClassifierFreeGuidance

    diffusion = dc.Diffusion(dc.NoiseSchedule.cosine(100), "v", "learned_range", clip="static").respaced(10)
    torch.manual_seed(0)
    model = dc.nn.build_mlp(dc.nn.MLPConfig(dim=2, hidden=32, depth=2, num_classes=3, learn_sigma=True)).eval()
    cfg = ClassifierFreeGuidance(model, 3.0, rescale=0.7)
    x_T, labels = torch.randn(16, 2), torch.arange(16) % 3
    g = torch.Generator().manual_seed(1)
    mode = NoHostSync()
    with mode:
        if sampler == "ddpm":
            out = dc.ddpm_sample(cfg, diffusion, x_T, labels=labels, generator=g, progress=False)
        else:
            out = dc.ddim_sample(cfg, diffusion, x_T, steps=10, eta=0.5, labels=labels, generator=g, progress=False)
    assert torch.isfinite(out.sample).all() and mode.checked_ops > 10 * 10
    assert mode.allowed == {"non-finite check": 1}
