"""Issue 17, part 4: the probe findings about image folders and their cache (each test failed before its fix)."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diffusion_core.train.folder_data as folder_data
import diffusion_core.train.trainer as trainer
from diffusion_core.errors import InvalidInput
from diffusion_core.train import TrainConfig, prepare_image_folder, train
from diffusion_core.train.folder_data import CACHE_DIR_NAME
from support import run_cli, run_on_tiny_disk

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, one_thread):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)


def _images(folder, n=4, size=8, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):  # stored uncompressed: the file size does not depend on the pixels
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png",
                                                                                    compress_level=0)
    return folder


def _config(data, out_dir, **kw) -> TrainConfig:
    base = dict(dataset="folder", data_dir=str(data), model="tiny", num_timesteps=20, steps=1, batch_size=4,
                warmup_steps=0, precision="fp32", log_every=1, checkpoint_every=100,
                out_dir=None if out_dir is None else str(out_dir))
    return TrainConfig(**{**base, **kw})


def one_line(code, err, message):
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and message in err, (code, err)


def test_an_edit_that_keeps_the_size_and_mtime_is_seen(tmp_path):
    data = _images(tmp_path / "data")
    first = prepare_image_folder(data, 8, 3)
    f = data / "2.png"
    st = f.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(f, compress_level=0)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # as a copy that keeps timestamps would
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    again = prepare_image_folder(data, 8, 3)
    assert (again.images[2] == 9).all() and np.array_equal(again.images[[0, 1, 3]], first.images[[0, 1, 3]])


def test_a_damaged_cache_is_rebuilt_not_trained_on(tmp_path, caplog):
    data = _images(tmp_path / "data")
    first = prepare_image_folder(data, 8, 3)
    reference = np.array(first.images)
    del first
    with open(data / CACHE_DIR_NAME / "8px-3ch.images.npy", "r+b") as f:  # one row's bytes flipped on disk
        f.seek(-100, os.SEEK_END)
        row = bytearray(f.read(50))
        f.seek(-100, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in row))
    again = prepare_image_folder(data, 8, 3)
    assert np.array_equal(np.array(again.images), reference)
    assert "is damaged" in caplog.text


def test_a_full_disk_while_preparing_is_an_error_not_sigbus(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder_data.os, "posix_fallocate", full)
    data = _images(tmp_path / "data")
    with pytest.raises(OSError, match="No space left on device while preparing the image cache") as e:
        prepare_image_folder(data, 8, 3)
    assert e.value.errno == errno.ENOSPC and not (data / CACHE_DIR_NAME).exists()
    monkeypatch.undo()
    # for real: a 256 kB file system, 16 small images, a 196 kB cache
    disk = tmp_path / "disk"
    code = textwrap.dedent(f"""
        import errno, sys
        import numpy as np
        from PIL import Image
        from diffusion_core.train import prepare_image_folder
        for i in range(16):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save("{disk}/%d.png" % i)
        try:
            prepare_image_folder("{disk}", 64, 3)
        except OSError as e:
            print("errno", e.errno == errno.ENOSPC, e)
            sys.exit(3)
    """)
    proc = run_on_tiny_disk(disk, code, size_kb=256)
    assert proc.returncode == 3 and "errno True" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr[-2000:])


def test_cache_folders_that_cannot_be_written_give_one_line(tmp_path, capsys):
    data = _images(tmp_path / "data")
    (data / CACHE_DIR_NAME).write_text("a file where the cache folder goes")
    run = tmp_path / "run"
    run.mkdir()
    (run / "data-cache").write_text("and one where the fallback goes")
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", data, "--model", "tiny", "--steps", 1,
                            "--out-dir", run, "--no-progress"], capsys)
    one_line(code, err, "cannot write the cache folder")


def test_file_names_that_are_not_utf8_and_decompression_bombs(tmp_path, capsys, monkeypatch):
    data = _images(tmp_path / "data")
    os.rename(data / "0.png", os.fsencode(data) + b"/\xff.png")
    r = train(_config(data, tmp_path / "run"), progress=False)
    assert r.step == 1
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # every 8x8 image is now "too large"
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", _images(tmp_path / "bombs"), "--model", "tiny",
                            "--steps", 1, "--out-dir", tmp_path / "bomb", "--no-progress"], capsys)
    one_line(code, err, "more than PIL.Image.MAX_IMAGE_PIXELS")
