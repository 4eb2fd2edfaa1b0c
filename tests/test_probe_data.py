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

import diffusion_core.train.folder_cache as folder_cache
import diffusion_core.train.trainer as trainer
from diffusion_core.errors import InvalidInput
from diffusion_core.train import TrainConfig, prepare_image_folder, train
from diffusion_core.train.folder_cache import CACHE_DIR_NAME
from support import run_cli, run_on_tiny_disk

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
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


def test_a_run_inside_its_data_folder_does_not_train_on_its_own_pngs(tmp_path):
    data = _images(tmp_path / "data")
    train(_config(data, data / "run"), progress=False)
    assert (data / "run" / "loss.png").exists()
    assert len(prepare_image_folder(data, 8, 3)) == 4
    with pytest.raises(InvalidInput, match="out_dir is data_dir"):
        train(_config(data, data), progress=False)


def test_resume_refuses_images_added_removed_or_changed(tmp_path):
    data = _images(tmp_path / "data")
    first = train(_config(data, tmp_path / "run"), progress=False).checkpoint
    _images(tmp_path / "data", n=5)  # a fifth image
    with pytest.raises(InvalidInput, match=r"cannot resume: the images in data_dir .* differ .* \(4 images then, 5 now"):
        train(_config(data, None, steps=2), resume=first, progress=False)
    (data / "4.png").unlink()
    assert train(_config(data, None, steps=2), resume=first, progress=False).step == 2


def test_the_cache_is_built_only_once_the_run_holds_its_folder(tmp_path):
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from diffusion_core.train.run_dir import RunDir
            with RunDir({str(run)!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InvalidInput, match="is in use by another training run"):
            train(_config(data, run), progress=False)
        assert not (data / CACHE_DIR_NAME).exists()  # nothing written for a run that could not start
    finally:
        holder.kill()
        holder.wait()


def test_a_failed_first_preparation_leaves_no_cache_folder(tmp_path, capsys):
    data = _images(tmp_path / "data")
    (data / "zz.png").write_bytes(b"not a png")
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", data, "--model", "tiny", "--steps", 1,
                            "--out-dir", tmp_path / "run", "--no-progress"], capsys)
    one_line(code, err, "cannot read image")
    assert not (data / CACHE_DIR_NAME).exists() and not (tmp_path / "run").exists()
    # and a run refused before it starts prepares nothing
    (data / "zz.png").unlink()
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", data, "--model", "tiny", "--class-cond",
                            "--out-dir", tmp_path / "run", "--no-progress"], capsys)
    one_line(code, err, "class-cond needs labelled data")
    assert not (data / CACHE_DIR_NAME).exists() and not (tmp_path / "run").exists()


def test_a_full_disk_while_preparing_is_an_error_not_sigbus(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder_cache.os, "posix_fallocate", full)
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
