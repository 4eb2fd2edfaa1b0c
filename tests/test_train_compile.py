"""The compiled training step: network + loss in one graph (``fullgraph=True``) that compiles once and is never
recompiled across steps, and under DDP the PyTorch-recommended order (DDP wraps the model, compile wraps DDP)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, train
from diffusion_core.train.runtime import DistInfo
from diffusion_core.train.models import build_model, model_config_for
from diffusion_core.train.step import TrainStep


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_dynamo(monkeypatch):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    yield
    torch._dynamo.reset()


def test_compiled_step_is_one_graph_compiled_once(tmp_path, monkeypatch):
    cfg = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=50, steps=6, batch_size=16, warmup_steps=3,
                      precision="fp32", compile=True, log_every=2, checkpoint_every=100, out_dir=str(tmp_path / "c"))
    # Any recompilation (a guard failing on a changed lr, step or shape) raises instead of silently compiling again.
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    compiled = train(cfg, progress=False)
    stats = torch._dynamo.utils.counters["stats"]
    assert stats["unique_graphs"] == 1, dict(stats)  # network + loss: one graph (fullgraph=True forbids breaks)
    assert stats["calls_captured"] > 10  # the graph holds the whole loss, not a stub
    eager = train(cfg.replace(compile=False, out_dir=str(tmp_path / "e")), progress=False)
    # Same run up to float rounding of the fused kernels: the losses agree to ~1e-6 relative per step.
    torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-4, atol=1e-5)


def test_ddp_wraps_the_model_before_compile(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        cfg = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=50, precision="fp32", compile=True)
        torch.manual_seed(0)
        model = build_model(model_config_for(cfg, 2))
        step = TrainStep(model, cfg.diffusion(), cfg, torch.device("cpu"), DistInfo(0, 2, 0), None, compile_model=True)
        net = step._net
        assert isinstance(net, torch._dynamo.eval_frame.OptimizedModule)  # compile outermost ...
        assert isinstance(net._orig_mod, DistributedDataParallel) and net._orig_mod.module is model  # ... around DDP
        x0, t, noise = torch.randn(8, 2), torch.randint(0, 50, (8,)), torch.randn(8, 2)
        loss, grad_norm = step(x0, t, noise, 0)
        assert torch.isfinite(loss) and grad_norm > 0
    finally:
        dist.destroy_process_group()
