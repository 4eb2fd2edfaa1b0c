"""Checkpoints: exact round trips, atomic writes, and loading that never unpickles."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file as real_save_file

import diffusion_core.train.checkpoint as ckpt_mod
from diffusion_core.nn import MLPConfig, build_mlp
from diffusion_core.train import TrainConfig, load_checkpoint, load_model, save_checkpoint
from diffusion_core.train.checkpoint import FORMAT


pytestmark = pytest.mark.usefixtures("one_thread")


def _trained_model_and_optimizer(steps: int = 3):
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(dim=2, hidden=16, depth=2, time_embed_dim=8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, foreach=True)
    for _ in range(steps):
        x, t = torch.randn(8, 2), torch.randint(0, 100, (8,))
        model(x, t).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _save_simple(path, step: int, value: float = 1.0):
    return save_checkpoint(path, step=step, train_config={"a": 1}, model_config={"kind": "mlp"},
                           model={"w": torch.full((3,), value)})


def test_round_trip_tensors_configs_rng_and_extra(tmp_path):
    model, opt = _trained_model_and_optimizer()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    train_config = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=100, out_dir=str(tmp_path)).to_dict()
    model_config = {"kind": "mlp", **model.config.to_dict()}
    rng = {"data": torch.Generator().manual_seed(3).get_state(), "torch": torch.get_rng_state()}
    scaler = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 7}
    path = save_checkpoint(tmp_path / "sub" / "c.safetensors", step=17, train_config=train_config,
                           model_config=model_config, model=model.state_dict(), ema=ema,
                           optimizer=opt.state_dict(), scaler=scaler, rng=rng, extra={"note": "hi", "n": [1, 2]})
    assert path == tmp_path / "sub" / "c.safetensors" and path.is_file()

    c = load_checkpoint(path)
    assert c.step == 17
    assert c.train_config == train_config
    assert TrainConfig.from_dict(c.train_config) == TrainConfig.from_dict(train_config)
    assert c.model_config == model_config
    assert c.scaler == scaler
    assert c.extra == {"note": "hi", "n": [1, 2]}
    for want, got in ((model.state_dict(), c.model), (ema, c.ema), (rng, c.rng)):
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    # The restored data generator continues the original stream.
    g = torch.Generator().set_state(c.rng["data"])
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=torch.Generator().manual_seed(3)))


def test_load_model_takes_the_ema_weights_unless_told_or_absent(tmp_path):
    model, _ = _trained_model_and_optimizer()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    model_config = {"kind": "mlp", **model.config.to_dict()}
    with_ema = load_checkpoint(save_checkpoint(tmp_path / "a.safetensors", step=1, train_config={},
                                               model_config=model_config, model=model.state_dict(), ema=ema))
    without = load_checkpoint(save_checkpoint(tmp_path / "b.safetensors", step=1, train_config={},
                                              model_config=model_config, model=model.state_dict()))
    for c, ema_flag, want in ((with_ema, True, ema), (with_ema, False, model.state_dict()),
                              (without, True, model.state_dict())):
        net = load_model(c, ema=ema_flag)
        assert not net.training
        got = net.state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    model, opt = _trained_model_and_optimizer(steps=3)
    path = save_checkpoint(tmp_path / "c.safetensors", step=3, train_config={}, model_config={},
                           model=model.state_dict(), optimizer=opt.state_dict())
    c = load_checkpoint(path)

    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    model2 = build_mlp(MLPConfig(dim=2, hidden=16, depth=2, time_embed_dim=8))
    model2.load_state_dict(c.model)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5, foreach=True)  # hyperparameters come from the file too
    opt2.load_state_dict(c.optimizer)

    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert set(s1["state"]) == set(s2["state"]) and len(s1["state"]) == len(list(model.parameters()))
    for idx in s1["state"]:
        assert set(s1["state"][idx]) == set(s2["state"][idx]) == {"step", "exp_avg", "exp_avg_sq"}
        for key, v in s1["state"][idx].items():
            assert torch.equal(v, s2["state"][idx][key]), (idx, key)
        assert float(s2["state"][idx]["step"]) == 3.0
    for g1, g2 in zip(s1["param_groups"], s2["param_groups"]):
        assert set(g1) == set(g2)
        for key in g1:  # JSON turns the betas tuple into a list; the values must agree
            v1, v2 = g1[key], g2[key]
            assert (list(v1) if isinstance(v1, tuple) else v1) == (list(v2) if isinstance(v2, tuple) else v2), key
    assert s2["param_groups"][0]["lr"] == 1e-2

    # One more identical step on both keeps them bit-identical.
    x, t = torch.randn(8, 2), torch.randint(0, 100, (8,))
    for m, o in ((model, opt), (model2, opt2)):
        m(x, t).pow(2).mean().backward()
        o.step()
        o.zero_grad()
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p1, p2)


def test_optional_parts_left_out(tmp_path):
    c = load_checkpoint(_save_simple(tmp_path / "c.safetensors", step=0))
    assert c.optimizer is None and c.scaler is None and c.ema == {} and c.rng == {} and c.extra == {}
    assert torch.equal(c.model["w"], torch.ones(3))


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    _save_simple(path, step=4, value=4.0)
    before = sorted(p.name for p in tmp_path.iterdir())

    calls = []

    def crashing_save_file(tensors, filename, metadata=None):
        calls.append(filename)
        with open(filename, "wb") as f:  # half a file, then the "crash"
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"broken")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod, "save_file", crashing_save_file)
    with pytest.raises(OSError, match="simulated"):
        _save_simple(path, step=8, value=8.0)
    assert len(calls) == 1 and calls[0] != str(path)  # it wrote beside the target, not over it

    c = load_checkpoint(path)
    assert c.step == 4 and torch.equal(c.model["w"], torch.full((3,), 4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["checkpoint.safetensors"]

    # The same crash as a KeyboardInterrupt (BaseException) cleans up too.
    def interrupted(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _save_simple(path, step=8, value=8.0)
    assert load_checkpoint(path).step == 4
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]

    monkeypatch.setattr(ckpt_mod, "save_file", real_save_file)
    _save_simple(path, step=8, value=8.0)
    assert load_checkpoint(path).step == 8


class _Marker:
    """Unpickling this creates a marker file; a safe loader never gets that far."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "torch.save-legacy", "pickle"])
def test_pickle_files_are_rejected_without_unpickling(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"model": {"w": torch.ones(2)}, "evil": _Marker(marker)}
    bad = tmp_path / "checkpoint.pt"
    if writer == "torch.save":
        torch.save(payload, bad)
    elif writer == "torch.save-legacy":
        torch.save(payload, bad, _use_new_zipfile_serialization=False)
    else:
        bad.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(bad)
    assert not marker.exists()
    # Control: the payload really is armed; unpickling it does create the marker.
    if writer == "pickle":
        pickle.loads(bad.read_bytes())
    else:
        torch.load(bad, weights_only=False)
    assert marker.exists()


def test_foreign_safetensors_is_rejected(tmp_path):
    plain = tmp_path / "plain.safetensors"
    real_save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(ValueError, match="format None"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    real_save_file({"w": torch.ones(2)}, str(other), metadata={"format": "pt", "step": "3"})
    with pytest.raises(ValueError, match=f"expected '{FORMAT}'"):
        load_checkpoint(other)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"")
    with pytest.raises(ValueError):
        load_checkpoint(junk)
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError):
        load_checkpoint(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="is a folder"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file, and says so (it exists)


def test_metadata_is_json_not_pickle(tmp_path):
    from safetensors import safe_open

    path = _save_simple(tmp_path / "c.safetensors", step=5)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["step"] == "5"
    for key in ("train_config", "model_config", "optimizer", "scaler", "extra"):
        json.loads(meta[key])
