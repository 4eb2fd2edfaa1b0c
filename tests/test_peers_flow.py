"""Rectified flow against the peers, on one network and one time grid: our Euler sampler on a ``RectifiedFlow``
path with the ``velocity`` target, against diffusers' ``FlowMatchEulerDiscreteScheduler`` loop and Meta's
``flow_matching`` (``CondOTProbPath`` and its ``ODESolver`` with Euler steps).

Conventions (also in ``diffusion_core.targets``): our x_t = (1 - t) x_0 + t eps runs from data (t = 0) to noise
(t = 1) and the network predicts u = eps - x_0, at the time input 1000 t. diffusers uses the same t (its
``sigmas``), the same time input (its ``timesteps``) and the same sign. flow_matching runs time the other way
(s = 1 - t, data at s = 1) and its velocity is x_0 - eps, so its model is ``-network(x, 1000 (1 - s))``.

On this path Euler in t is exact for a constant prediction (x_t is affine in t given x_0 and eps), so the three
differ only by rounding: float32 throughout, compared to 1e-5 relative. The peers are in the ``peers`` extra; a
test is skipped with the reason when its peer is not installed.
"""
from __future__ import annotations

import pytest
import torch

import diffusion_core as dc

STEPS = 12


class VelocityNet(torch.nn.Module):
    """A fixed random network of (x, time input): a smooth, nonlinear stand-in for a trained velocity model."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(dim + 1, 32, generator=g) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(32, dim, generator=g) / 4)

    def forward(self, x: torch.Tensor, t_in: torch.Tensor) -> torch.Tensor:
        t = (t_in.float() / 1000).reshape(-1, 1).expand(len(x), 1)
        return torch.tanh(torch.cat([x, t], dim=1) @ self.w1) @ self.w2 - x  # pulls towards the origin


@pytest.fixture(scope="module")
def net():
    return VelocityNet().eval()


def _start() -> torch.Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(1))


def _ours(net, ts: torch.Tensor) -> torch.Tensor:
    denoiser = dc.Denoiser(net, dc.RectifiedFlow(), target="velocity")
    return dc.sample_euler(denoiser, _start(), ts, progress=False).sample


@torch.no_grad()
def test_euler_equals_diffusers_flow_match_euler(net):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is a peer (pip install 'diffusion-core-torch[peers]')")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    scheduler.set_timesteps(STEPS)
    x = _start()
    for timestep in scheduler.timesteps:
        x = scheduler.step(net(x, timestep.reshape(1)), timestep, x).prev_sample
    ts = scheduler.sigmas.to(torch.float64)  # its grid, ending at 0: the same times for ours
    assert ts[0] == 1 and ts[-1] == 0 and len(ts) == STEPS + 1
    torch.testing.assert_close(_ours(net, ts), x, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_euler_equals_flow_matching_ode_solver(net):
    pytest.importorskip("flow_matching", reason="flow_matching is a peer (pip install 'diffusion-core-torch[peers]')")
    from flow_matching.solver import ODESolver

    ts = dc.time_grid(dc.RectifiedFlow(), STEPS)  # uniform: 1, 11/12, ..., 1/12, 0
    s_grid = (1 - ts).float()  # its time: noise at 0, data at 1

    class TheirVelocity(torch.nn.Module):  # their velocity is x_0 - eps at their time s = 1 - t
        def forward(self, x, t):
            return -net(x, (1000 * (1 - t)).reshape(1))

    theirs = ODESolver(velocity_model=TheirVelocity()).sample(x_init=_start(), step_size=None, method="euler",
                                                               time_grid=s_grid)
    torch.testing.assert_close(_ours(net, ts), theirs, rtol=1e-5, atol=1e-5)


def test_our_path_is_flow_matchings_cond_ot_path_with_time_reversed():
    pytest.importorskip("flow_matching", reason="flow_matching is a peer (pip install 'diffusion-core-torch[peers]')")
    from flow_matching.path import CondOTProbPath

    g = torch.Generator().manual_seed(2)
    x0, eps, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), torch.rand(5, generator=g)
    theirs = CondOTProbPath().sample(x_0=eps, x_1=x0, t=1 - t)  # their x_0 is the noise, x_1 the data
    path = dc.RectifiedFlow()
    ours = path.sample(x0.double(), t.double(), eps.double())
    torch.testing.assert_close(ours.float(), theirs.x_t, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close((eps - x0), -theirs.dx_t, rtol=0, atol=0)  # our target u, their velocity negated
