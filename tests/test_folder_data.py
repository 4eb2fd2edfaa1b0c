"""Image folders streamed from disk: class labels, the prepared uint8 cache, and the batch stream."""
from __future__ import annotations

import gc
import json
import multiprocessing
import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_core.train import folder_cache, images
from diffusion_core.train.data_source import folder_batches, global_batch
from diffusion_core.train.folder_cache import CACHE_DIR_NAME, prepare_image_folder
from diffusion_core.train.images import class_folders, list_images


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _noise_folder(root, layout: dict[str, int], size=(10, 12), seed=0):
    """``layout``: class folder ("" for the top level) -> number of random-noise RGB PNGs."""
    rng = np.random.default_rng(seed)
    for cls, n in layout.items():
        for i in range(n):
            _write(root / cls / f"img{i:02d}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    original = images.decode_image

    def counting(path, image_size, channels):
        calls.append(path)
        return original(path, image_size, channels)

    monkeypatch.setattr(images, "decode_image", counting)
    return calls


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """13 noise images (not mirror-symmetric) in 3 classes, prepared at 8x8 RGB."""
    root = _noise_folder(tmp_path_factory.mktemp("streamed"), {"cat": 5, "dog": 4, "emu": 4})
    return prepare_image_folder(root, 8, 3)


def _as_x0(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(u8)).permute(0, 3, 1, 2).float() / 127.5 - 1


# Class labels (torchvision ImageFolder convention)

def test_class_folders(tmp_path):
    root = _noise_folder(tmp_path / "labelled", {"dog": 2, "ant": 1, "cat/kittens": 2, "cat": 1})
    (root / "empty").mkdir()  # no image: not a class
    _write(root / ".hidden" / "x.png", np.zeros((4, 4, 3), np.uint8))  # hidden: skipped, not a class
    files, labels, names = class_folders(root)
    assert names == ["ant", "cat", "dog"]
    got = {f.relative_to(root).as_posix(): int(y) for f, y in zip(files, labels)}
    assert got == {"ant/img00.png": 0, "cat/img00.png": 1, "cat/kittens/img00.png": 1, "cat/kittens/img01.png": 1,
                   "dog/img00.png": 2, "dog/img01.png": 2}
    assert labels.dtype == np.int64 and files == sorted(files)

    flat = _noise_folder(tmp_path / "flat", {"": 3})
    (flat / "notes").mkdir()
    files, labels, names = class_folders(flat)
    assert names == [] and labels.tolist() == [0, 0, 0] and len(files) == 3  # unlabelled: no class names

    _noise_folder(flat, {"cls": 1})
    with pytest.raises(ValueError, match=r"mixes images at its top level \('img00.png'.*\('cls'") as e:
        class_folders(flat)
    assert str(flat) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing"):
        class_folders(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no image"):
        class_folders(tmp_path / "labelled" / "empty")


# Preparation: the uint8 memory-mapped cache

def test_prepare_layout_and_values(tmp_path, count_decodes):
    root = _noise_folder(tmp_path, {"b": 3, "a": 2})
    p = prepare_image_folder(root, 8, 3)
    cache = root / CACHE_DIR_NAME
    assert p.cache_dir == cache
    assert sorted(f.name for f in cache.iterdir()) == [
        "8px-3ch.images.npy", "8px-3ch.json", "8px-3ch.labels.npy", "lock"]
    assert isinstance(p.images, np.memmap) and not p.images.flags.writeable
    assert p.images.dtype == np.uint8 and p.images.shape == (5, 8, 8, 3) and len(p) == 5 and len(count_decodes) == 5
    assert p.labels.dtype == np.int64 and p.labels.tolist() == [0, 0, 1, 1, 1] and p.class_names == ["a", "b"]
    # Exactly what decode_image gives for each file, in class_folders' order.
    assert np.array_equal(p.images, np.stack([images.decode_image(f, 8, 3) for f in class_folders(root)[0]]))
    index = json.loads((cache / "8px-3ch.json").read_text())
    assert {k: index[k] for k in ("format", "image_size", "channels", "count", "class_names", "images", "labels")} == {
        "format": folder_cache.FORMAT_VERSION, "image_size": 8, "channels": 3, "count": 5, "class_names": ["a", "b"],
        "images": "8px-3ch.images.npy", "labels": "8px-3ch.labels.npy"}
    assert len(index["fingerprint"]) == 64 and index["source"] == str(root.resolve())
    # The cache folder is neither images nor a class; another setting gets its own files beside the first.
    assert len(list_images(root)) == 5 and class_folders(root)[2] == ["a", "b"]
    grey = prepare_image_folder(root, 4, 1)
    assert grey.images.shape == (5, 4, 4, 1) and (cache / "4px-1ch.json").exists()
    want = np.stack([images.decode_image(f, 4, 1) for f in class_folders(root)[0]])
    assert np.array_equal(grey.images, want)
    # A pickled PreparedFolder carries paths, not arrays.
    assert len(pickle.dumps(p)) < 2000 and np.array_equal(pickle.loads(pickle.dumps(p)).images, p.images)


def test_prepare_reuses_and_invalidates(tmp_path, count_decodes):
    root = _noise_folder(tmp_path, {"": 4})
    first = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 4
    again = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 4 and np.array_equal(again.images, first.images)  # nothing decoded
    assert again.fingerprint == first.fingerprint and again.class_names == [] and again.labels.tolist() == [0] * 4

    # Changed: new pixels (and, as an edit does, a new mtime).
    f = root / "img01.png"
    st = f.stat()
    _write(f, np.full((10, 12, 3), 7, np.uint8))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 8 and changed.fingerprint != first.fingerprint
    assert np.array_equal(changed.images[1], np.full((8, 8, 3), 7, np.uint8))
    assert np.array_equal(changed.images[[0, 2, 3]], first.images[[0, 2, 3]])
    # Added, then removed.
    _write(root / "img99.png", np.full((10, 12, 3), 200, np.uint8))
    added = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 13 and len(added) == 5 and (added.images[4] == 200).all()
    (root / "img00.png").unlink()
    removed = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 17 and len(removed) == 4 and np.array_equal(removed.images[0], changed.images[1])
    prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == 17


def test_killed_preparation_leaves_nothing_trusted(tmp_path, count_decodes):
    root = _noise_folder(tmp_path / "data", {"": 5})
    cache = root / CACHE_DIR_NAME
    before = prepare_image_folder(root, 8, 3)  # a valid cache, then a file changes: a rebuild is due
    _write(root / "img04.png", np.full((10, 12, 3), 99, np.uint8))
    flag = tmp_path / "flag" / "halfway"
    flag.parent.mkdir()

    def child():  # rebuilds, and is killed (SIGKILL: no cleanup runs) at its third image
        original, done = images.decode_image, []

        def hang_at_third(*args):
            if len(done) == 2:
                flag.write_text("halfway")
                time.sleep(600)
            done.append(args)
            return original(*args)

        images.decode_image = hang_at_third
        prepare_image_folder(root, 8, 3)
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    deadline = time.monotonic() + 60
    while not flag.exists() and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists(), "the child never reached its third image"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    stale = sorted(f.name for f in cache.glob("*.tmp-*"))
    assert stale == [f"8px-3ch.images.npy.tmp-{proc.pid}"]
    assert sorted(f.name for f in cache.iterdir()) == [*stale, "lock"]  # the old cache is gone, not trusted

    n = len(count_decodes)
    after = prepare_image_folder(root, 8, 3)
    assert len(count_decodes) == n + 5 and not list(cache.glob("*.tmp-*"))
    assert (after.images[4] == 99).all() and np.array_equal(after.images[:4], before.images[:4])


def test_prepare_errors_and_cache_dir(tmp_path, monkeypatch, count_decodes):
    root = _noise_folder(tmp_path / "data", {"": 2})
    (root / CACHE_DIR_NAME).write_text("a file where the cache folder would go")  # the cache cannot be written
    with pytest.raises(PermissionError, match=r"cannot write the cache folder .*pass cache_dir=") as e:
        prepare_image_folder(root, 8, 3)
    assert "\n" not in str(e.value) and CACHE_DIR_NAME in str(e.value)

    elsewhere = tmp_path / "caches"
    p = prepare_image_folder(root, 8, 3, cache_dir=elsewhere)
    assert p.cache_dir.parent == elsewhere and p.cache_dir.name.startswith("data-") and len(count_decodes) == 2
    other = prepare_image_folder(_noise_folder(tmp_path / "other" / "data", {"": 1}), 8, 3, cache_dir=elsewhere)
    assert other.cache_dir != p.cache_dir and len(other) == 1  # one cache_dir serves many folders
    assert len(prepare_image_folder(root, 8, 3, cache_dir=elsewhere)) == 2 and len(count_decodes) == 3

    # A cache folder that cannot be locked (read-only) still serves a valid cache, and only that.
    def read_only(folder):
        raise PermissionError(f"cannot write the cache folder {str(folder)!r}; pass cache_dir= a writable folder")

    monkeypatch.setattr(folder_cache, "_lock", read_only)
    assert len(prepare_image_folder(root, 8, 3, cache_dir=elsewhere)) == 2 and len(count_decodes) == 3
    with pytest.raises(PermissionError):
        prepare_image_folder(root, 4, 3, cache_dir=elsewhere)
    monkeypatch.undo()

    with pytest.raises(FileNotFoundError, match="missing"):
        prepare_image_folder(tmp_path / "missing", 8, 3)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        prepare_image_folder(root, 8, 2, cache_dir=elsewhere)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        prepare_image_folder(root, 0, 3, cache_dir=elsewhere)
    (root / "zz_bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="zz_bad.png"):
        prepare_image_folder(root, 8, 3, cache_dir=elsewhere)
    assert sorted(f.name for f in p.cache_dir.iterdir()) == ["lock"]  # the failed build left nothing behind


# Batches

def test_global_batch_is_a_function_of_seed_and_step():
    idx, flip = global_batch(7, 64, seed=5, step=3, hflip=True)
    assert idx.dtype == torch.int64 and idx.shape == (64,) and flip.dtype == torch.bool
    assert 0 <= idx.min() and idx.max() < 7 and len(set(idx.tolist())) == 7  # uniform, with replacement
    assert 10 < flip.sum() < 54
    again = global_batch(7, 64, seed=5, step=3, hflip=True)
    assert torch.equal(again[0], idx) and torch.equal(again[1], flip)
    assert not torch.equal(global_batch(7, 64, seed=5, step=4, hflip=True)[0], idx)
    assert not torch.equal(global_batch(7, 64, seed=6, step=3, hflip=True)[0], idx)
    plain = global_batch(7, 64, seed=5, step=3, hflip=False)
    assert torch.equal(plain[0], idx) and not plain[1].any()


def _reference(p, batch_size, seed, step, hflip):
    """The batch of ``step`` computed directly from the memmap: gather, mirror the flagged images' width."""
    idx, flip = global_batch(len(p), batch_size, seed, step, hflip=hflip)
    u8 = np.stack([np.flip(p.images[i], axis=1) if f else p.images[i] for i, f in zip(idx.tolist(), flip.tolist())])
    return _as_x0(u8), torch.from_numpy(p.labels[idx.numpy()]), flip


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_equal_the_memmap_reference(prepared, num_workers):
    rng_before = torch.get_rng_state()
    it = folder_batches(prepared, batch_size=6, seed=3, device="cpu", hflip=True, num_workers=num_workers)
    flipped = 0
    for step in range(5):
        x0, y = next(it)
        ref_x, ref_y, flip = _reference(prepared, 6, 3, step, hflip=True)
        assert x0.dtype == torch.float32 and x0.shape == (6, 3, 8, 8) and x0.is_contiguous()
        assert y.dtype == torch.int64 and torch.equal(x0, ref_x) and torch.equal(y, ref_y)
        flipped += int(flip.sum())
    it.close()
    assert 0 < flipped < 30  # both branches were checked
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is untouched

    cl = folder_batches(prepared, batch_size=6, seed=3, hflip=True, num_workers=num_workers, channels_last=True)
    x0, _ = next(cl)
    assert x0.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x0, _reference(prepared, 6, 3, 0, hflip=True)[0])
    cl.close()


def test_resume_and_ranks_give_the_same_global_batches(prepared):
    full = folder_batches(prepared, batch_size=8, seed=1, hflip=True)
    steps = [next(full) for _ in range(6)]
    resumed = folder_batches(prepared, batch_size=8, seed=1, hflip=True, start_step=4)
    for s in (4, 5):
        x0, y = next(resumed)
        assert torch.equal(x0, steps[s][0]) and torch.equal(y, steps[s][1])
    ranks = [folder_batches(prepared, batch_size=8, seed=1, hflip=True, rank=r, world_size=2, start_step=2,
                            num_workers=w) for r, w in ((0, 0), (1, 2))]
    for s in (2, 3, 4):
        (x_a, y_a), (x_b, y_b) = next(ranks[0]), next(ranks[1])
        assert x_a.shape == (4, 3, 8, 8)
        assert torch.equal(torch.cat([x_a, x_b]), steps[s][0]) and torch.equal(torch.cat([y_a, y_b]), steps[s][1])
    ranks[1].close()
    unflipped = folder_batches(prepared, batch_size=8, seed=1)
    assert torch.equal(next(unflipped)[0], _reference(prepared, 8, 1, 0, hflip=False)[0])


def test_workers_stop_on_close_and_on_garbage_collection(prepared):
    for end in ("close", "gc"):
        before = set(multiprocessing.active_children())
        it = folder_batches(prepared, batch_size=4, seed=0, num_workers=2)
        next(it)
        workers = [p for p in multiprocessing.active_children() if p not in before]
        assert len(workers) == 2 and all(p.is_alive() for p in workers)
        if end == "close":
            it.close()
        else:
            del it
            gc.collect()
        assert not any(p.is_alive() for p in workers)


def test_batch_argument_errors(prepared):
    for kw, match in ((dict(batch_size=6, world_size=4), "divisible by world_size=4"),
                      (dict(batch_size=0), "batch_size must be a positive int"),
                      (dict(batch_size=4, world_size=2, rank=2), r"rank must be an int in \[0, 1\]"),
                      (dict(batch_size=4, start_step=-1), "start_step must be an int >= 0"),
                      (dict(batch_size=4, num_workers=-1), "num_workers must be an int >= 0"),
                      (dict(batch_size=4, seed=1.5), "seed must be an int")):
        with pytest.raises(ValueError, match=match):
            folder_batches(prepared, **{"seed": 0, **kw})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_cuda_batches_equal_the_memmap_reference(prepared, num_workers):
    it = folder_batches(prepared, batch_size=6, seed=3, device="cuda", hflip=True, num_workers=num_workers,
                        channels_last=True)
    for step in range(3):
        x0, y = next(it)
        ref_x, ref_y, _ = _reference(prepared, 6, 3, step, hflip=True)
        assert x0.is_cuda and y.is_cuda and x0.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(x0.cpu(), ref_x, rtol=0, atol=1e-6)  # the device's division may round differently
        assert torch.equal(y.cpu(), ref_y)
    it.close()
