"""Training data: toy sets, the bundled digits, and folders of the user's images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_core.train import Dataset, digits, image_folder, load_dataset, toy_data

TOY = [d for d in Dataset if d.is_toy]


def test_toy_set_list():
    assert {d.value for d in TOY} == {"swiss-roll", "two-moons", "8-gaussians", "checkerboard"}


@pytest.mark.parametrize("name", [d.value for d in TOY])
def test_toy_sets_shape_finite_and_seeded(name):
    x = toy_data(name, 5000, torch.Generator().manual_seed(1))
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < 3.0  # roughly unit scale
    assert 0.2 < x.std(0).min() and x.std(0).max() < 1.5
    assert torch.equal(x, toy_data(name, 5000, torch.Generator().manual_seed(1)))
    assert not torch.equal(x, toy_data(name, 5000, torch.Generator().manual_seed(2)))
    want = toy_data(name, 300, torch.Generator().manual_seed(4))
    assert torch.equal(load_dataset(Dataset(name), toy_size=300, seed=4), want)


def test_toy_sets_follow_their_definitions():
    g = torch.Generator().manual_seed(0)
    # 8 Gaussians: every point is within 5 sigma (0.25) of one of the 8 centres on the 0.8-circle.
    x = toy_data("8-gaussians", 4000, g)
    k = torch.arange(8) * torch.pi / 4
    centres = 0.8 * torch.stack([torch.cos(k), torch.sin(k)], 1)
    nearest = torch.cdist(x, centres).min(1)
    assert nearest.values.max() < 0.25
    assert torch.bincount(nearest.indices, minlength=8).min() > 350  # all 8 modes used, roughly evenly
    # Checkerboard: points lie in [-1, 1]^2 in cells whose column and row parities agree.
    x = toy_data("checkerboard", 4000, g)
    assert x.min() >= -1 and x.max() <= 1
    col, row = ((x + 1) * 2).floor().long().clamp(max=3).unbind(1)
    assert ((col % 2) == (row % 2)).all()
    with pytest.raises(ValueError, match="not a 2-D toy set"):
        toy_data("digits", 10)
    with pytest.raises(ValueError):
        toy_data("mnist", 10)


def test_digits():
    x = digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0  # 0 and 16 both occur
    # Levels are the 17 values (v / 8 - 1) for v in 0..16.
    assert torch.equal(torch.unique(x), torch.arange(17, dtype=torch.float32) / 8 - 1)
    assert torch.equal(load_dataset(Dataset.DIGITS), x)


def _write(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def test_image_folder_shapes_ranges_and_exact_constants(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "a_white.png", np.full((12, 20, 3), 255, np.uint8))  # wide, cropped to its centre
    _write(tmp_path / "b_black.png", np.zeros((30, 30), np.uint8))  # greyscale
    _write(tmp_path / "c_noise.jpg", rng.integers(0, 256, (16, 9, 3), dtype=np.uint8), quality=90)
    # Nested, with an upper-case suffix.
    _write(tmp_path / "nested" / "d_red.PNG", np.tile(np.array([255, 0, 0], np.uint8), (5, 7, 1)))
    _write(tmp_path / "e_rgba.png", np.full((8, 8, 4), 255, np.uint8))  # alpha dropped
    _write(tmp_path / "f.jpeg", np.full((10, 10, 3), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")

    x = image_folder(tmp_path, 8, 3)
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    white, black, noise, rgba, grey, red = x  # sorted by path: a, b, c, e, f, nested/d
    assert torch.equal(white, torch.ones(3, 8, 8))
    assert torch.equal(black, -torch.ones(3, 8, 8))
    assert torch.equal(rgba, torch.ones(3, 8, 8))
    assert torch.equal(red[0], torch.ones(8, 8)) and torch.equal(red[1:], -torch.ones(2, 8, 8))
    assert torch.allclose(grey, torch.full((3, 8, 8), 128 / 127.5 - 1), atol=3 / 127.5)  # JPEG
    assert noise.std() > 0.1

    grey1 = image_folder(tmp_path, 4, 1)
    assert grey1.shape == (6, 1, 4, 4)
    assert torch.equal(grey1[0], torch.ones(1, 4, 4)) and torch.equal(grey1[1], -torch.ones(1, 4, 4))
    assert torch.equal(load_dataset(Dataset.FOLDER, data_dir=str(tmp_path), image_size=8, channels=3), x)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        image_folder(tmp_path / "missing", 8, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="data_dir") as e:
        image_folder(empty, 8, 3)
    assert str(empty) in str(e.value)

    corrupt = tmp_path / "corrupt"
    _write(corrupt / "good.png", np.zeros((8, 8, 3), np.uint8))
    (corrupt / "zz_bad.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="zz_bad.png"):
        image_folder(corrupt, 8, 3)

    truncated = tmp_path / "truncated"
    _write(truncated / "t.png", np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = (truncated / "t.png").read_bytes()
    (truncated / "t.png").write_bytes(data[: len(data) // 2])  # a valid header, then the file stops
    with pytest.raises(ValueError, match="t.png"):
        image_folder(truncated, 8, 3)

    with pytest.raises(ValueError, match="channels"):
        image_folder(corrupt, 8, 2)
