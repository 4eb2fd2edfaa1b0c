"""The training loop: exact resume, NaN/Inf handling, precision switches."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import diffusion_core.train.runtime as runtime
import diffusion_core.train.step as train_step
import diffusion_core.train.trainer as trainer
from diffusion_core.losses import LossTerms
from diffusion_core.train import (
    NonFiniteLossError, Precision, TrainConfig, autocast_dtype, load_checkpoint, resolve_device, train,
)


pytestmark = pytest.mark.usefixtures("one_thread")


REAL_PREVIEW = trainer.preview


@pytest.fixture(autouse=True)
def previews(monkeypatch):
    """The end-of-run preview (2,000 points or 64 images, 50 DDIM steps) costs seconds on this CPU and is
    not what these tests check, so it only records its path; test_checkpoints_and_outputs runs the real one."""
    paths = []
    monkeypatch.setattr(trainer, "preview", lambda model, diffusion, shape, device, path, n=64: paths.append(path))
    return paths


def _mlp_config(tmp_path, name="run", **kw) -> TrainConfig:
    # precision pinned: "auto" means bf16 on CPUs with native bf16 and fp32 elsewhere, and these tests mean fp32
    base = dict(dataset="swiss-roll", model="mlp", num_timesteps=100, steps=8, batch_size=16, lr=1e-3, precision="fp32",
                warmup_steps=3, ema_decay=0.9, out_dir=str(tmp_path / name), log_every=2, checkpoint_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- resume

RESUME_CASES = {
    # digits-8 is a real preset with dropout 0.1, so resuming must also restore the global RNG.
    "digits-8-dropout": dict(dataset="digits", model="digits-8", num_timesteps=100, batch_size=4, lr=1e-3, precision="fp32",
                             warmup_steps=3, ema_decay=0.9, log_every=2, checkpoint_every=1000),
    "mlp-fp16-scaler": None,  # filled below: the toy MLP under fp16 autocast, so the GradScaler state resumes
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_exact(tmp_path, previews, case):
    if case == "digits-8-dropout":
        cfg = TrainConfig(**RESUME_CASES[case], steps=8, out_dir=str(tmp_path / "a"))
    else:
        cfg = _mlp_config(tmp_path, "a", precision="fp16")
    a = train(cfg, progress=False)
    assert a.losses.shape == (8,) and a.step == 8 and torch.isfinite(a.losses).all()

    b1 = train(cfg.replace(steps=4, out_dir=str(tmp_path / "b")), progress=False)
    ckpt = load_checkpoint(b1.checkpoint)
    assert ckpt.step == 4
    if case == "digits-8-dropout":
        assert ckpt.model_config["dropout"] > 0  # dropout is live, so the RNG state matters
    else:
        assert ckpt.scaler is not None and ckpt.scaler["scale"] > 0
    b2 = train(cfg.replace(steps=8, out_dir=str(tmp_path / "b2")), resume=b1.checkpoint, progress=False)
    assert b2.step == 8 and b2.losses.shape == (4,)

    assert torch.equal(torch.cat([b1.losses, b2.losses]), a.losses)
    assert _state_equal(b2.model, a.model)
    assert _state_equal(b2.ema_model, a.ema_model)
    assert not _state_equal(b2.model, b2.ema_model)
    assert load_checkpoint(b2.checkpoint).step == 8
    assert [p.parent.name + "/" + p.name for p in previews] == [f"{d}/preview_final.png" for d in ("a", "b", "b2")]


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch):
    """Control for the dropout case: skip restoring the global RNG and the resumed losses change."""
    cfg = TrainConfig(**RESUME_CASES["digits-8-dropout"], steps=6, out_dir=str(tmp_path / "a"))
    a = train(cfg, progress=False)
    b1 = train(cfg.replace(steps=3, out_dir=str(tmp_path / "b")), progress=False)
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    b2 = train(cfg.replace(out_dir=str(tmp_path / "b2")), resume=b1.checkpoint, progress=False)
    assert torch.equal(b1.losses, a.losses[:3])
    assert not torch.equal(b2.losses, a.losses[3:])


def test_resume_refuses_a_different_experiment_and_allows_optimizer_changes(tmp_path, caplog):
    cfg = _mlp_config(tmp_path, "a", steps=2, weight_decay=0.0)
    first = train(cfg, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume.*num_timesteps, seed"):
        train(cfg.replace(steps=4, seed=1, num_timesteps=200), resume=first.checkpoint, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume.*precision"):
        train(cfg.replace(steps=4, precision="bf16"), resume=first.checkpoint, progress=False)
    # The usual recovery after a divergence: a lower lr, a tighter clip, some weight decay. Allowed, with a notice,
    # and really applied (the optimizer state loaded from the checkpoint brings the old settings back otherwise).
    with caplog.at_level("WARNING", logger="diffusion_core.train"):
        more = train(cfg.replace(steps=4, lr=5e-4, grad_clip=0.5, weight_decay=0.01, out_dir=str(tmp_path / "b")),
                     resume=first.checkpoint, progress=False)
    notices = [r.getMessage() for r in caplog.records]
    assert any("lr: 0.001 -> 0.0005" in m for m in notices) and any("grad_clip: 1.0 -> 0.5" in m for m in notices)
    c = load_checkpoint(more.checkpoint)
    assert c.train_config["lr"] == 5e-4 and c.train_config["grad_clip"] == 0.5
    assert [g["weight_decay"] for g in c.optimizer["param_groups"]] == [0.01]
    assert [g["lr"] for g in c.optimizer["param_groups"]] == [5e-4]  # warmup (3 steps) is over at step 4
    # Changing only run-control fields is allowed.
    more = train(cfg.replace(steps=3, log_every=1, checkpoint_every=5, out_dir=str(tmp_path / "c")),
                 resume=first.checkpoint, progress=False)
    assert more.step == 3 and more.losses.shape == (1,)


def test_resume_at_or_past_the_target_writes_nothing(tmp_path):
    cfg = _mlp_config(tmp_path, "a", steps=4)
    first = train(cfg, progress=False)
    run = tmp_path / "a"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # A run already at its target does nothing and writes nothing.
    done = train(cfg, resume=first.checkpoint, progress=False)
    assert done.step == 4 and done.losses.numel() == 0 and done.checkpoint is None
    # Asking for fewer steps than the checkpoint has is a mistake, not a no-op.
    with pytest.raises(ValueError, match=r"steps=2 is below the checkpoint's step 4"):
        train(cfg.replace(steps=2), resume=first.checkpoint, progress=False)
    # A run refused for a bad option leaves the folder as it was (config.json included).
    with pytest.raises(ValueError, match="cannot resume"):
        train(cfg.replace(steps=6, seed=3), resume=first.checkpoint, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_checkpoints_and_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "preview", REAL_PREVIEW)
    cfg = _mlp_config(tmp_path, steps=5, checkpoint_every=2, num_timesteps=20)  # T < 50: preview uses T steps
    r = train(cfg, progress=False)
    out = tmp_path / "run"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == [".diffusion-core-run.json", ".lock", "checkpoint.safetensors", "config.json", "loss.png",
                     "metrics.jsonl", "preview_final.png"]
    manifest = json.loads((out / ".diffusion-core-run.json").read_text())["files"]  # every file the run wrote
    assert set(manifest) == set(names[2:]) | {p.name for p in out.glob("events.out.tfevents.*")}
    assert any(out.glob("events.out.tfevents.*")) == (importlib.util.find_spec("tensorboard") is not None)
    c = load_checkpoint(r.checkpoint)
    assert c.step == 5 and TrainConfig.from_dict(c.train_config) == cfg
    assert all(torch.equal(c.model[k], v) for k, v in r.model.state_dict().items())
    assert all(torch.equal(c.ema[k], v) for k, v in r.ema_model.state_dict().items())
    with Image.open(out / "preview_final.png") as im:
        assert im.size == (512, 512) and im.mode == "L"
        assert set(np.unique(np.asarray(im))) <= {0, 255}  # a scatter: white canvas, black points


# ----------------------------------------------------------------------------- NaN / Inf

def _poison_from(monkeypatch, k: int, value: float):
    calls = {"n": 0}
    real = train_step.training_losses

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] >= k:
            bad = terms.loss * value  # keeps the graph, so backward runs (and poisons the weights)
            return LossTerms(bad, terms.simple, terms.vlb)
        return terms

    monkeypatch.setattr(train_step, "training_losses", poisoned)
    return calls


@pytest.mark.parametrize(("k", "log_every", "value", "last_good"), [
    (5, 1, math.nan, 4),  # caught by the log check at step 5
    (5, 10, math.nan, 4),  # caught by the pre-checkpoint check at step 6
    (4, 100, math.inf, 2),  # the bad step is itself a checkpoint step: nothing is written for it
    (1, 1, math.nan, None),  # nothing good to keep
])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, previews, k, log_every, value,
                                                              last_good):
    calls = _poison_from(monkeypatch, k, value)
    cfg = _mlp_config(tmp_path, steps=10, checkpoint_every=2, log_every=log_every)
    with pytest.raises(NonFiniteLossError, match=rf"at step {k}\b") as e:
        train(cfg, progress=False)
    assert isinstance(e.value, FloatingPointError)
    assert calls["n"] < 10 and previews == []  # it stopped early, with no preview of a broken model
    path = tmp_path / "run" / "checkpoint.safetensors"
    if last_good is None:
        assert not path.exists()
        assert "last good checkpoint" not in str(e.value)
        return
    assert str(path) in str(e.value)
    c = load_checkpoint(path)
    assert c.step == last_good < k
    for part in (c.model, c.ema):
        assert all(torch.isfinite(v).all() for v in part.values())


# ----------------------------------------------------------------------------- precision

def _spy_autocast(monkeypatch) -> list:
    """The autocast dtype (None: off) in force each time the training loss is computed."""
    seen = []
    real = train_step.training_losses

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_step, "training_losses", spy)
    return seen


def test_autocast_dtype_mapping(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype(Precision.FP32, cpu) is None
    assert autocast_dtype(Precision.BF16, cpu) is torch.bfloat16
    assert autocast_dtype(Precision.FP16, cpu) is torch.float16
    # auto on a CPU: bf16 exactly when it is native (AMX or AVX512-BF16), whichever CPU runs this test
    for amx, avx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx: v, raising=False)
        assert autocast_dtype(Precision.AUTO, cpu) is (torch.bfloat16 if (amx or avx) else None)
    # auto on CUDA: bf16 from compute capability 8.0 (Ampere) on, fp16 with a GradScaler before it
    cuda = torch.device("cuda", 0)
    for capability, want in (((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                             ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert autocast_dtype(Precision.AUTO, cuda) is want


@pytest.mark.parametrize("native_bf16", [False, True])
def test_auto_precision_trains_in_what_the_probe_says(tmp_path, monkeypatch, native_bf16):
    """Both branches of auto on any CPU: the probe is faked, the autocast state is observed inside the loss."""
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native_bf16)
    seen = _spy_autocast(monkeypatch)
    r = train(_mlp_config(tmp_path, steps=2, precision="auto"), progress=False)
    assert seen == [torch.bfloat16 if native_bf16 else None] * 2 and torch.isfinite(r.losses).all()


@pytest.mark.parametrize(("precision", "want_dtype"), [
    ("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16),
])
def test_one_step_per_precision(tmp_path, monkeypatch, precision, want_dtype):
    seen = _spy_autocast(monkeypatch)
    r = train(_mlp_config(tmp_path, steps=1, precision=precision), progress=False)
    assert seen == [want_dtype]
    assert r.losses.shape == (1,) and torch.isfinite(r.losses).all() and r.losses.dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in r.model.parameters())
    c = load_checkpoint(r.checkpoint)
    if precision == "fp16":
        assert c.scaler is not None and c.scaler["scale"] > 0
    else:
        assert c.scaler is None


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    for bad in ("cuda:abc", "foo", "mps:x", ""):
        with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got"):
            resolve_device(bad)


def test_config_validation():
    with pytest.raises(ValueError, match="the 2-D toy sets train model='mlp', got model='tiny'"):
        TrainConfig(dataset="swiss-roll", model="tiny")
    with pytest.raises(ValueError, match="needs data_dir"):
        TrainConfig(dataset="folder", model="tiny")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    cfg = TrainConfig(dataset="two-moons", model="mlp", precision="bf16")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})



# --------------------------------------------------------------------------- each thing declared once

def test_every_option_is_declared_with_its_help_check_and_resume_policy():
    """TrainConfig's fields carry what the command line and --resume need; these are the sets resume allowed
    before the declarations moved next to the fields."""
    import dataclasses

    from diffusion_core.train.config import OnResume, options_on_resume

    for f in dataclasses.fields(TrainConfig):
        assert len(f.metadata["help"].split()) >= 2 and callable(f.metadata["check"]), f.name
        assert isinstance(f.metadata["on_resume"], OnResume), f.name
    assert options_on_resume(OnResume.RUN_CONTROL) == {
        "steps", "out_dir", "log_every", "checkpoint_every", "checkpoint_minutes", "preview_every", "device",
        "compile", "channels_last", "workers", "eval_every", "eval_samples"}
    assert options_on_resume(OnResume.OPTIMIZER) == {"lr", "warmup_steps", "weight_decay", "grad_clip", "ema_decay"}


def test_an_option_without_help_cannot_be_declared():
    import dataclasses

    from diffusion_core.train.config import _declared, option

    for bad in ("", "help", None):
        with pytest.raises(TypeError, match="needs its help"):
            option(0, bad, lambda name, v: v)

    with pytest.raises(TypeError, match=r"fields \['bare'\] are not declared"):
        @_declared
        @dataclasses.dataclass(frozen=True)
        class Bare:
            fine: int = option(0, "a declared option", lambda name, v: v)
            bare: int = 0


def test_each_dataset_is_declared_once():
    """Every --dataset name (unchanged), and what each declares agrees with what its loader gives."""
    from diffusion_core.reverse import Clip
    from diffusion_core.train import Dataset
    from diffusion_core.train.data import load_builtin

    assert [d.value for d in Dataset] == ["digits", "swiss-roll", "two-moons", "8-gaussians", "checkerboard", "folder"]
    for d in Dataset:
        spec = d.spec
        assert TrainConfig(dataset=d, data_dir="x" if spec.kind == "folder" else None).model == spec.default_model
        assert spec.clip is (Clip.NONE if d.is_toy else Clip.STATIC) and spec.hflip == (d is Dataset.FOLDER)
        if spec.load is not None:
            data, labels, names = load_builtin(d, toy_size=64)
            assert tuple(data.shape[1:]) == spec.shape and names == list(spec.class_names)
            assert (labels is None) == (not spec.class_names)
            if labels is not None:
                assert int(labels.max()) < len(names)


def test_learning_rate_is_a_linear_warmup_then_constant():
    lr = train_step.learning_rate
    assert [lr(s, 1e-3, 4) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr(0, 2e-3, 0) == 2e-3  # no warmup
