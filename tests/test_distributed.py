"""Data parallelism: two CPU processes under torchrun (gloo) train exactly what one process would."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, build_model, load_checkpoint, model_config_for, train
from diffusion_core.train.run_log import read_evals

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config: TrainConfig) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), json.dumps(config.to_dict())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    # Own session, so a hang kills torchrun and both workers rather than blocking the test run.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish within {TIMEOUT_S} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def _read_rank(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    info = {"writes": json.loads(meta["writes"]), "losses": torch.tensor(json.loads(meta["losses"])),
            "step": int(meta["step"]), "group": json.loads(meta["group"])}
    return model, ema, info


def test_two_cpu_ranks_match_each_other_and_one_process(tmp_path, monkeypatch, one_thread):
    steps = 5
    # fp32 pinned: with "auto", a CPU with native bf16 trains in bf16, whose rounding differs between a half-batch
    # and a full batch far more than the float32 summation order this test allows for.
    config = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=100, steps=steps, batch_size=16, lr=1e-3,
                         warmup_steps=0, ema_decay=0.9, log_every=1, checkpoint_every=2, device="cpu", precision="fp32",
                         eval_every=2, eval_samples=50, out_dir=str(tmp_path / "ddp"))
    proc = _launch(config)
    assert proc.returncode == 0, proc.stdout[-4000:]

    ddp = tmp_path / "ddp"
    # Rank 0 wrote the checkpoint and config.json; rank 1 wrote nothing but its own weights dump.
    # (plus TensorBoard's event file when tensorboard is installed, rank 0's only)
    names = sorted(p.name for p in ddp.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == [".diffusion-core-run.json", ".lock", "checkpoint.safetensors", "config.json", "loss.png",
                     "metrics.jsonl", "rank0.safetensors", "rank1.safetensors"]
    assert len(list(ddp.glob("events.out.tfevents.*"))) == (importlib.util.find_spec("tensorboard") is not None)
    m0, e0, info0 = _read_rank(ddp / "rank0.safetensors")
    m1, e1, info1 = _read_rank(ddp / "rank1.safetensors")
    assert info0["group"] == info1["group"] == {"initialized": True, "world_size": 2, "backend": "gloo"}
    ckpt_path = str(ddp / "checkpoint.safetensors")
    # --eval-every 2: rank 0 evaluates at 2, 4 and the end, after each checkpoint; rank 1 never does
    assert info0["writes"] == [["checkpoint", ckpt_path, 2], ["evaluation", 2], ["checkpoint", ckpt_path, 4],
                               ["evaluation", 4], ["checkpoint", ckpt_path, 5], ["evaluation", 5],
                               ["preview", str(ddp / "preview_final.png")]]
    assert [r.step for r in read_evals(ddp / "metrics.jsonl")] == [2, 4, 5]
    assert info1["writes"] == []
    assert info0["step"] == info1["step"] == steps

    # DDP keeps the replicas bit-identical: same init, same all-reduced gradient, same update.
    assert m0.keys() == m1.keys() and e0.keys() == e1.keys()
    assert all(torch.equal(m0[k], m1[k]) for k in m0)
    assert all(torch.equal(e0[k], e1[k]) for k in e0)
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.step == steps
    # Each rank's global RNG (dropout) is its own, seeded apart, and the checkpoint keeps both for an exact resume;
    # the data generator is shared (one "data" state).
    assert set(ckpt.rng) == {"data", "torch", "torch.rank1"}
    assert not torch.equal(ckpt.rng["torch"], ckpt.rng["torch.rank1"])
    assert all(torch.equal(ckpt.model[k], m0[k]) for k in m0)
    assert all(torch.equal(ckpt.ema[k], e0[k]) for k in e0)
    # Each rank saw a different half of the batch.
    assert info0["losses"].shape == info1["losses"].shape == (steps,)
    assert not torch.equal(info0["losses"], info1["losses"])

    # One process with the same global batch: the same run up to float32 summation order.
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    single = train(config.replace(out_dir=str(tmp_path / "single"), eval_every=0), progress=False)  # one thread, as each worker
    ref = single.model.state_dict()
    # The global loss is the mean of the two half-batch means (equal halves).
    assert torch.allclose((info0["losses"] + info1["losses"]) / 2, single.losses, rtol=1e-5, atol=1e-6)
    # DDP averages two half-batch gradients where one process takes a full-batch mean, so the gradients differ in
    # float32 rounding (~1e-7 relative). AdamW's step lr * m / (sqrt(v) + eps) is scale-free per coordinate, so for
    # the few coordinates whose gradient nearly cancels, that rounding changes the step by a visible fraction of lr;
    # everywhere else it stays at rounding level. Measured here: 9 of ~890k weights differ by more than 1e-6, the
    # largest by 3.4e-6 (0.3% of one step), while the median weight moved 2.3e-3. So: 99.9% of the weights agree
    # within 1e-6, every weight within a tenth of one step (1e-4), and the weights moved far more than either.
    diff = torch.cat([(m0[k] - ref[k]).abs().flatten() for k in ref])
    assert (diff > 1e-6).float().mean() <= 1e-3, (diff > 1e-6).sum()
    assert diff.max() <= 0.1 * config.lr, diff.max()
    torch.manual_seed(config.seed)  # the trainer's initial weights
    init = build_model(model_config_for(config, 2)).state_dict()
    moved = torch.cat([(m0[k] - init[k]).abs().flatten() for k in init])
    assert moved.median() > 100 * 1e-6 and moved.max() > 10 * 0.1 * config.lr  # the runs really trained
