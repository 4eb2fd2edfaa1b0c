"""Issue 17, part 4: the probe findings about checkpoints (each test failed before its fix): the integrity hash
covers the header, arguments and class names are checked, and a path that is not a readable checkpoint file says
what it is."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import diffusion_core.train.trainer as trainer
from diffusion_core.errors import InvalidInput
from diffusion_core.train import TrainConfig, load_checkpoint, save_checkpoint, train
from support import run_cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)


def _config(out_dir, **kw) -> TrainConfig:
    base = dict(dataset="swiss-roll", model="mlp", num_timesteps=20, steps=2, batch_size=8, warmup_steps=0,
                precision="fp32", log_every=1, checkpoint_every=100, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def one_line(code, err, message):
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and message in err, (code, err)


def _rewrite_header(path: Path, out: Path, **changes) -> Path:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key, edit in changes.items():
        meta[key] = edit(meta[key])
    save_file(tensors, str(out), metadata=meta)
    return out


def test_an_edited_header_is_corrupt_and_format_2_files_still_load(tmp_path, capsys):
    from diffusion_core.train.checkpoint import tensors_sha256

    ckpt = train(_config(tmp_path / "run"), progress=False).checkpoint
    edits = {"train_config": lambda v: json.dumps({**json.loads(v), "num_timesteps": 10}),  # another schedule
             "step": lambda v: "7", "extra": lambda v: '{"class_names": ["x"]}'}
    for key, edit in edits.items():
        bad = _rewrite_header(ckpt, tmp_path / f"{key}.safetensors", **{key: edit})
        code, _, err = run_cli(["sample", "--checkpoint", bad, "--out", tmp_path / f"{key}.png", "--steps", 5,
                                "--no-progress"], capsys)
        one_line(code, err, "is corrupt: its tensors or header entries do not match the SHA-256")
        assert not (tmp_path / f"{key}.png").exists()
    # a checkpoint of format 2 (the hash of its tensors only) still loads
    with safe_open(str(ckpt), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = {**f.metadata(), "format": "diffusion-core/2", "sha256": tensors_sha256(tensors)}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    assert load_checkpoint(tmp_path / "old.safetensors").step == 2


def test_checkpoint_arguments_and_class_names_are_checked(tmp_path, capsys):
    with pytest.raises(InvalidInput, match="step must be an int >= 0, got -1"):
        save_checkpoint(tmp_path / "c.safetensors", step=-1, train_config={}, model_config={}, model={})
    assert not (tmp_path / "c.safetensors").exists()
    c = load_checkpoint(train(_config(tmp_path / "run"), progress=False).checkpoint)
    bad = save_checkpoint(tmp_path / "names.safetensors", step=2, train_config=c.train_config,
                          model_config=c.model_config, model=c.model, extra={"class_names": 5})
    code, _, err = run_cli(["sample", "--checkpoint", bad, "--out", tmp_path / "s.png", "--no-progress"], capsys)
    one_line(code, err, "has class names that are not a list of strings: 5")


def test_paths_that_are_not_checkpoint_files_say_what_they_are(tmp_path, capsys):
    for path, message in ((tmp_path, "is a folder"), ("/dev/null", "is not a file (a device or a pipe)"),
                          (tmp_path / "nope.safetensors", "does not exist")):
        code, _, err = run_cli(["sample", "--checkpoint", path, "--out", tmp_path / "s.png"], capsys)
        one_line(code, err, message)


def test_a_permission_error_is_reported_as_one(tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv(1) to drop the file-permission capabilities")
    locked = tmp_path / "locked.safetensors"
    shutil.copy(train(_config(tmp_path / "run"), progress=False).checkpoint, locked)
    locked.chmod(0)
    drop = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search"]
    probe = subprocess.run([*drop, "cat", str(locked)], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("cannot drop the capabilities that bypass file permissions here")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*drop, sys.executable, "-m", "diffusion_core.cli", "sample", "--checkpoint", str(locked),
                           "--out", str(tmp_path / "s.png")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == f"diffusion-core sample: error: {str(locked)!r} Permission denied\n"
