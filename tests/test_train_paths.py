"""Training on any path (--path vp | rectified-flow | edm): the config's defaults and refusals, the loss the train
step minimizes written out by hand, and a short run per path that learns the swiss roll and samples from the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_core.cli import main
from diffusion_core.errors import InvalidInput
from diffusion_core.paths import DiscreteVP, RectifiedFlow, VarianceExploding
from diffusion_core.targets import Target
from diffusion_core.train import TrainConfig
from diffusion_core.train.config import TimeSampling, TrainPath
from diffusion_core.train.data import Dataset
from diffusion_core.train.runtime import DistInfo
from diffusion_core.train.step import TrainStep

POINTS = dict(dataset="swiss-roll")


@pytest.mark.parametrize("path, target, times, path_type", [
    ("vp", Target.V, TimeSampling.UNIFORM, DiscreteVP),
    ("rectified-flow", Target.VELOCITY, TimeSampling.UNIFORM, RectifiedFlow),
    ("edm", Target.EDM, TimeSampling.LOG_NORMAL, VarianceExploding),
])
def test_each_path_has_its_papers_defaults(path, target, times, path_type):
    c = TrainConfig(path=path, **POINTS)
    assert (c.path, c.parameterization, c.time_sampling) == (TrainPath(path), target, times)
    assert type(c.gaussian_path()) is path_type
    assert TrainConfig.from_dict({k: v for k, v in TrainConfig(**POINTS).to_dict().items() if k != "path"}).path \
        is TrainPath.VP  # a config written before paths existed is a vp run


@pytest.mark.parametrize("changes", [dict(vlb_weight=1e-3), dict(variance="learned_range", vlb_weight=1e-3)])
def test_ddpm_only_options_are_refused_off_vp(changes):
    with pytest.raises(InvalidInput, match="variance and vlb_weight are DDPM's"):
        TrainConfig(path="rectified-flow", **POINTS, **changes)


def test_sigma_data_is_refused_where_nothing_uses_it():
    with pytest.raises(InvalidInput, match="sigma_data is EDM's"):
        TrainConfig(path="rectified-flow", sigma_data=0.75, **POINTS)
    assert TrainConfig(path="vp", parameterization="edm", sigma_data=0.75, **POINTS).sigma_data == 0.75


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([[0.3, -0.2], [0.1, 0.5]]))
        self.b = torch.nn.Parameter(torch.tensor(0.01))

    def forward(self, x, t_in):
        return x @ self.a + self.b * t_in.reshape(-1, 1).to(x.dtype)


def _step(config: TrainConfig, net) -> TrainStep:
    return TrainStep(net, config.gaussian_path(), config, torch.device("cpu"), DistInfo(), None, False)


def test_rectified_flow_loss_is_the_velocity_error():
    """Flow matching's loss (Lipman et al. eq. 23 in our time direction): mean ||v(x_t, 1000 t) - (eps - x0)||^2."""
    net, g = Linear(), torch.Generator().manual_seed(0)
    x0, eps, t = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g), torch.rand(16, generator=g).double()
    step = _step(TrainConfig(path="rectified-flow", **POINTS), net)
    x_t = (1 - t.float()).reshape(-1, 1) * x0 + t.float().reshape(-1, 1) * eps
    by_hand = ((net(x_t, 1000 * t.float()) - (eps - x0)) ** 2).mean()
    torch.testing.assert_close(step.loss(x0, t, eps), by_hand, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sd", [0.5, 0.75])  # Karras et al.'s sigma_data, and --sigma-data 0.75 (the digits' own)
def test_edm_loss_is_karras_weighted_denoiser_error(sd):
    """EDM (Karras et al. eq. 2 with table 1's weighting): lambda(sigma) ||D(x0 + sigma eps) - x0||^2,
    lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2, averaged; D from the preconditioned network."""
    net, g = Linear(), torch.Generator().manual_seed(1)
    x0, eps = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(16, generator=g, dtype=torch.float64))
    step = _step(TrainConfig(path="edm", sigma_data=sd, **POINTS), net)
    s = sigma.reshape(-1, 1)
    c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt()
    c_in, c_noise = 1 / (s**2 + sd**2).sqrt(), torch.log(sigma) / 4
    x = x0.double() + s * eps.double()
    D = c_skip * x + c_out * net((c_in * x).float(), c_noise.float()).double()
    weight = (s**2 + sd**2) / (s * sd) ** 2
    by_hand = (weight * (D - x0.double()) ** 2).mean()
    torch.testing.assert_close(step.loss(x0, sigma, eps).double(), by_hand, rtol=1e-4, atol=1e-6)


def _sliced_w1(a: np.ndarray, b: np.ndarray, n: int = 64) -> float:
    d = np.random.default_rng(0).normal(size=(n, 2))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    m = min(len(a), len(b))
    return float(np.mean([np.mean(np.abs(np.sort(a[:m] @ v) - np.sort(b[:m] @ v))) for v in d]))


@pytest.mark.parametrize("path", ["rectified-flow", "edm"])
def test_a_short_run_learns_the_swiss_roll_and_samples(path, tmp_path):
    """600 steps of the MLP, then `sample`: the samples are nearer the data (sliced W1) than the noise they started
    from is, by at least 3x (the noise is about 0.9 away, 600 steps get to about 0.15)."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", "swiss-roll", "--path", path, "--steps", "600", "--out-dir", str(out),
                 "--no-progress", "--precision", "fp32"]) in (0, None)
    assert main(["sample", "--checkpoint", str(out / "checkpoint.safetensors"), "--out", str(tmp_path / "s.png"),
                 "--num", "2000", "--steps", "20", "--no-progress"]) in (0, None)
    x = np.load(tmp_path / "s.npy").reshape(-1, 2)
    data = Dataset("swiss-roll").spec.load(2000, torch.Generator().manual_seed(5))[0].numpy()
    noise = np.random.default_rng(1).normal(size=(2000, 2))
    assert np.isfinite(x).all()
    assert _sliced_w1(x, data) < _sliced_w1(noise, data) / 3
    # the path's default sampler and grid (documented in `sample --help`): named explicitly, the same samples
    explicit = {"rectified-flow": ["--sampler", "ddim", "--spacing", "uniform"],
                "edm": ["--sampler", "heun", "--spacing", "karras", "--sigma-max", "80"]}[path]
    assert main(["sample", "--checkpoint", str(out / "checkpoint.safetensors"), "--out", str(tmp_path / "e.png"),
                 "--num", "2000", "--steps", "20", "--no-progress", *explicit]) in (0, None)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), np.load(tmp_path / "s.npy"))


@pytest.mark.parametrize("path", ["vp", "rectified-flow", "edm"])
def test_a_class_conditional_run_finishes_with_its_preview(path, tmp_path):
    """The final preview of a class-conditional model samples each class in turn (the denoiser refuses a
    class-conditional network called without labels, so a preview without them ended every such run in an error)."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", "two-moons", "--class-cond", "--path", path, "--steps", "20", "--log-every",
                 "10", "--out-dir", str(out), "--no-progress"]) in (0, None)
    assert (out / "preview_final.png").stat().st_size > 0
    for guidance in ("1", "3"):  # classifier-free guidance on every path: one class, guided and not
        assert main(["sample", "--checkpoint", str(out / "checkpoint.safetensors"), "--out",
                     str(tmp_path / f"g{guidance}.png"), "--num", "200", "--steps", "8", "--label", "1",
                     "--guidance", guidance, "--no-progress"]) in (0, None)
    plain, guided = np.load(tmp_path / "g1.npy"), np.load(tmp_path / "g3.npy")
    assert np.isfinite(guided).all() and not np.allclose(plain, guided)  # the scale reaches the sampler
