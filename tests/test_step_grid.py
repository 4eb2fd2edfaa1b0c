"""Issue 22, part 3: what a sampling step repeats, moved out of the loop. The loop's position tensors, the step's
reads cut before the loop (the same values as gathering by index), the grid made once per path, the one-pass NaN
check, and the copies of x0_hat kept only where a sampler keeps it."""
from __future__ import annotations

import threading

import pytest
import torch

import diffusion_core as dc
from diffusion_core import grids, sampling, step_grid
from diffusion_core.errors import InvalidInput, NonFiniteError
from diffusion_core.paths import ContinuousVP, RectifiedFlow

pytestmark = pytest.mark.usefixtures("one_thread")


def test_step_index_is_one_tensor_per_position_and_device():
    k = sampling.step_index(3, torch.device("cpu"))
    assert k.dtype == torch.long and k.shape == (1,) and int(k) == 3
    assert sampling.step_index(3, torch.device("cpu")) is k and sampling.position(k) == 3
    assert sampling.position(torch.tensor([3])) is None  # an equal tensor that is not the loop's: unknown


def test_step_index_grown_by_many_threads_holds_its_position():
    """Threads that ask for new positions at once never leave position i holding another value."""
    device = torch.device("cpu")
    top = len(sampling._STEP_INDEX.get(device, [])) + 400
    barrier = threading.Barrier(8)

    def grow(offset):
        barrier.wait()
        for i in range(offset, top, 7):
            sampling.step_index(i, device)

    threads = [threading.Thread(target=grow, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(top):
        k = sampling.step_index(i, device)
        assert int(k) == i and sampling.position(k) == i


def _net(x, t, labels=None):
    return torch.tanh(x) * (1 + 0.001 * t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))))


SAMPLERS = {"ddim": lambda d, x, ts: dc.sample_ddim(d, x, ts, progress=False, return_trajectory=True),
            "ddim-eta": lambda d, x, ts: dc.sample_ddim(d, x, ts, eta=0.7, progress=False,
                                                        generator=torch.Generator().manual_seed(1)),
            "ddpm": lambda d, x, ts: dc.sample_ddpm(d, x, ts, progress=False, generator=torch.Generator().manual_seed(2)),
            "heun": lambda d, x, ts: dc.sample_heun(d, x, ts, progress=False, return_trajectory=True),
            "dpmpp-2m": lambda d, x, ts: dc.sample_dpmpp_2m(d, x, ts, progress=False, return_trajectory=True),
            "edm-churn": lambda d, x, ts: dc.sample_edm(d, x, ts, s_churn=4.0, progress=False,
                                                         generator=torch.Generator().manual_seed(3))}


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("path, target", [(ContinuousVP.cosine(), "v"), (RectifiedFlow(), "velocity"),
                                          (ContinuousVP.linear(), "edm")])
def test_reads_cut_before_the_loop_equal_gathering_by_index(monkeypatch, name, path, target):
    """Eagerly, a step reads views cut before the loop; given a position tensor that is not the loop's (as under
    torch.compile), it gathers by ``index_select``. Both give the same samples, bit for bit."""
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = dc.time_grid(path, 6, "log-snr", sigma_max=80.0)
    cut = SAMPLERS[name](dc.Denoiser(_net, path, target), x, ts)
    monkeypatch.setattr(step_grid, "position", lambda k: None)  # every read gathers by index
    gathered = SAMPLERS[name](dc.Denoiser(_net, path, target), x, ts)
    for a, b in zip(cut, gathered):
        assert (a is None and b is None) or torch.equal(a, b)


def test_cut_reads_have_the_shapes_of_gathered_ones():
    path = ContinuousVP.cosine()
    x = torch.randn(4, 3, 2, 2)
    g = step_grid.StepGrid(dc.Denoiser(_net, path, "eps"), x, dc.time_grid(path, 5))
    k = sampling.step_index(2, x.device)
    other = torch.tensor([2])
    assert g._eager(k) == 2 and g._eager(other) is None
    for read in (g.time, g.network_input_time, lambda k: g.col(g.sigma, k)):
        a, b = read(k), read(other)
        assert a.shape == b.shape and torch.equal(a, b)
    for a, b in zip(g.coefficients(k), g.coefficients(other)):
        assert a.shape == b.shape == (4, 1, 1, 1) and torch.equal(a, b)
    assert g.after(k) is sampling.step_index(3, x.device) and torch.equal(g.after(other), torch.tensor([3]))


def test_a_discrete_grid_is_made_once_and_handed_out_as_a_copy():
    path = dc.Diffusion(dc.NoiseSchedule.linear(100)).path
    first = dc.time_grid(path, 10, "trailing")
    first[0] = -1.0  # the caller's own copy
    again = dc.time_grid(path, 10, "trailing")
    assert again[0] == 100 and again.data_ptr() != first.data_ptr()
    assert torch.equal(again, dc.time_grid(path, 10, "trailing"))
    assert len(grids._DISCRETE_GRIDS[path]) == 1
    assert torch.equal(dc.time_grid(path, 10, "linspace")[:-1], (dc.spaced_timesteps(100, 10) + 1).flip(0).double())


def test_a_shared_grid_is_the_kept_tensor_itself():
    """``shared=True`` hands out the kept grid (the entry points pass it straight to a sampler, which never writes
    it): the same tensor at every call, equal to the copy; on a continuous path a new grid each call."""
    path = dc.Diffusion(dc.NoiseSchedule.linear(100)).path
    kept = dc.time_grid(path, 10, "trailing", shared=True)
    assert dc.time_grid(path, 10, "trailing", shared=True) is kept
    assert torch.equal(kept, dc.time_grid(path, 10, "trailing")) and dc.time_grid(path, 10, "trailing") is not kept
    continuous = ContinuousVP.cosine()
    assert dc.time_grid(continuous, 4, shared=True) is not dc.time_grid(continuous, 4, shared=True)
    with pytest.raises(dc.errors.InvalidInputType, match="shared must be True or False, got 'yes'"):
        dc.time_grid(path, 10, shared="yes")


def test_a_grid_seen_before_is_found_by_its_values():
    """The tables are made once per grid values, device and dtype: a float32 or int copy of a float64 grid finds
    the same tables (its values convert exactly), a changed value makes new ones, and a bad grid is refused on
    every call, also when it looks like a good one's start."""
    path = dc.Diffusion(dc.NoiseSchedule.linear(100)).path
    x = torch.zeros(2, 3)
    den = dc.Denoiser(lambda x, t: x, path)
    g = step_grid.StepGrid(den, x, torch.tensor([90.0, 40.0, 0.0], dtype=torch.float64))
    for same in (torch.tensor([90.0, 40.0, 0.0]), torch.tensor([90, 40, 0]), [90.0, 40.0, 0.0]):
        assert step_grid.StepGrid(den, x, same)._tables is g._tables
    other = step_grid.StepGrid(den, x, torch.tensor([90.0, 41.0, 0.0]))
    assert other._tables is not g._tables and other.steps == g.steps == 2
    assert torch.equal(other.alpha64, path.alpha(torch.tensor([90.0, 41.0, 0.0], dtype=torch.float64)))
    for bad in (torch.tensor([[90.0, 40.0, 0.0]]), torch.tensor([90.0, float("nan"), 0.0]), torch.tensor(0.0)):
        for _ in range(2):
            with pytest.raises(InvalidInput, match="ts must be a decreasing 1-D grid"):
                step_grid.StepGrid(den, x, bad)


def test_the_result_check_catches_what_the_sum_hides_and_passes_an_overflowing_sum():
    """The check reads the sum first: finite values whose sum overflows are still a good sample; +inf and -inf
    (whose sum is NaN) and a lone +inf are not."""
    path = ContinuousVP.cosine()
    ts = dc.time_grid(path, 1)
    big = torch.full((8, 4), 6e4, dtype=torch.float16)  # the sum, 1.9e6, is inf in float16
    assert torch.isinf(big.sum())
    out = dc.sample_ddim(dc.Denoiser(lambda x, t: x, path, "x0"), big, ts, progress=False).sample
    assert torch.equal(out, big)
    for bad in ([float("inf"), -float("inf")], [float("inf"), 1.0]):
        x = torch.ones(8, 4)
        x[3, :2] = torch.tensor(bad)
        with pytest.raises(NonFiniteError, match="sample_ddim: x_T holds NaN or Inf: 1 of 8 samples"):
            dc.sample_ddim(dc.Denoiser(lambda x, t: x, path, "x0"), x, ts, progress=False)


@pytest.mark.parametrize("fn", [dc.ddim_sample, dc.ddpm_sample])
def test_samplers_that_copy_no_x0_with_a_network_of_static_output_buffers(fn):
    """DDIM and DDPM keep no x0_hat across network calls, so they no longer copy it; a network that writes every
    output into one buffer (CUDA graphs) must still give the plain network's samples, and a sample that is not
    that buffer (DDPM's last step returns x0_hat itself: that one is copied)."""
    d = dc.Diffusion(dc.NoiseSchedule.linear(100, dtype=torch.float64), "x0")
    plain = lambda x, t: torch.tanh(x) * (1 + t.reshape(-1, 1) / 100)  # noqa: E731
    buf = torch.empty(16, 1, dtype=torch.float64)

    def static(x, t):
        return buf.copy_(plain(x, t))

    x_T = torch.randn(16, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = [fn(net, d, x_T, steps=6, progress=False, return_trajectory=True,
               generator=torch.Generator().manual_seed(1)) for net in (plain, static)]
    assert torch.equal(runs[0].trajectory, runs[1].trajectory) and torch.equal(runs[0].pred_x0, runs[1].pred_x0)
    assert runs[1].sample.data_ptr() != buf.data_ptr()
