"""Issue 17, part 4: the probe findings about files (each test failed before its fix): a user's files in a run
folder, --overwrite, a run that fails before it starts, the loss plot, and what a killed checkpoint write leaves."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diffusion_core.train.trainer as trainer
from diffusion_core.errors import InvalidInput
from diffusion_core.train import TrainConfig, load_checkpoint, train
from diffusion_core.train.run_dir import RunDir
from diffusion_core.train.run_log import LogRecord, RunLog

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)


def _config(out_dir, **kw) -> TrainConfig:
    base = dict(dataset="swiss-roll", model="mlp", num_timesteps=20, steps=2, batch_size=8, warmup_steps=0, precision="fp32",
                log_every=1, checkpoint_every=100, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def one_line(code, err, message):
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and message in err, (code, err)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


# ----------------------------------------------------------------------------- the run folder

@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "loss.png", "preview_000100.png",
                                  "events.out.tfevents.123.mybox"])
def test_a_users_files_of_a_runs_names_are_never_replaced(tmp_path, name):
    project = tmp_path / "project"
    project.mkdir()
    (project / name).write_bytes(b"the user's own")
    for overwrite in (False, True):
        with pytest.raises(InvalidInput, match=rf"holds {name}, of the names a run writes, which no run there wrote"):
            train(_config(project), overwrite=overwrite, progress=False)
    assert (project / name).read_bytes() == b"the user's own" and not (project / "checkpoint.safetensors").exists()


def test_overwrite_deletes_exactly_what_the_run_wrote(tmp_path):
    run = tmp_path / "run"
    train(_config(run), progress=False)
    (run / "preview_mine.png").write_bytes(b"mine")  # not a name a run writes
    (run / "preview_dir.png").mkdir()  # a folder: deleting by pattern failed on it, halfway
    second = train(_config(run, seed=1), overwrite=True, progress=False)
    assert load_checkpoint(second.checkpoint).train_config["seed"] == 1
    assert (run / "preview_mine.png").read_bytes() == b"mine" and (run / "preview_dir.png").is_dir()
    # a file of a run's name that the run did not write: --overwrite refuses, and both stay
    (run / "events.out.tfevents.123.mybox").write_bytes(b"mine")
    before = _snapshot(run)
    with pytest.raises(InvalidInput, match="events.out.tfevents.123.mybox"):
        train(_config(run, seed=2), overwrite=True, progress=False)
    assert _snapshot(run) == before


def test_an_overwrite_that_fails_before_it_starts_keeps_the_earlier_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(_config(run), progress=False)
    before = _snapshot(run)

    def fails(self, *args):
        raise InvalidInput("the data failed a check")

    monkeypatch.setattr(trainer.DataSource, "prepare", fails)
    with pytest.raises(InvalidInput, match="the data failed a check"):
        train(_config(run, seed=1), overwrite=True, progress=False)
    assert _snapshot(run) == before


def test_a_run_that_fails_before_it_starts_leaves_no_folder(tmp_path, monkeypatch):
    def fails(self, *args):
        raise InvalidInput("the data failed a check")

    monkeypatch.setattr(trainer.DataSource, "prepare", fails)
    with pytest.raises(InvalidInput):
        train(_config(tmp_path / "new" / "run"), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_loss_plot_leaves_pyplots_backend_and_draws_a_single_record(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's inline backend
    try:
        log = RunLog(tmp_path)
        log.write(LogRecord(step=50, loss=0.3, lr=1e-3, grad_norm=1.0, img_per_s=10.0, wall_s=1.0))
        log.close()
        path = log.plot()
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = (abs(rgb - np.array([0x1F, 0x77, 0xB4])).sum(-1) < 60).sum()  # matplotlib's first colour
    assert blue >= 9  # the one record is drawn (a marker), not an empty axis


# ----------------------------------------------------------------------------- checkpoint temp files

def test_a_killed_checkpoint_write_leaves_nothing_after_the_next_start(tmp_path):
    """safetensors writes its own temp file (.tmpXXXXXX) and renames it; a kill -9 before the rename left that
    file (a whole checkpoint) in the run folder, and the next start did not know its name."""
    run = tmp_path / "run"
    first = train(_config(run), progress=False).checkpoint
    before = _snapshot(run)
    killed = textwrap.dedent(f"""
        import os
        import diffusion_core.train.checkpoint as ckpt
        from diffusion_core.train import load_checkpoint, save_checkpoint

        def killed_mid_write(tensors, filename, metadata=None):  # what safetensors does, then kill -9
            with open(os.path.join(os.path.dirname(filename), ".tmpAb12Cd"), "wb") as f:
                f.write(b"a whole checkpoint" * 1000)
            os._exit(9)

        ckpt.save_file = killed_mid_write
        c = load_checkpoint({str(first)!r})
        save_checkpoint({str(first)!r}, step=3, train_config=c.train_config, model_config=c.model_config, model=c.model)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    assert subprocess.run([sys.executable, "-c", killed], env=env, timeout=300).returncode == 9
    assert set(os.listdir(run)) - set(before) - {".lock"}  # the kill left something
    with RunDir(run, resuming=first):
        pass
    assert sorted(set(os.listdir(run)) - {".lock"}) == sorted(before) and _snapshot(run) == before
