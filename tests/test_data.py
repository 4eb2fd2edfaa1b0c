"""Training data: toy sets, the bundled digits, and folders of the user's images."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_core.train import Dataset, digits, images, prepare_image_folder, toy_data
from diffusion_core.train.data import load_builtin
from diffusion_core.train.images import decode_image, list_images

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
    assert torch.equal(load_builtin(Dataset(name), toy_size=300, seed=4)[0], want)  # what a run trains on


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
    assert torch.equal(load_builtin(Dataset.DIGITS)[0], x)


def _write(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def _decoded(root, image_size, channels):
    """Every image under ``root`` as the image cache holds it (prepare_image_folder decodes list_images' files with
    decode_image), as x0 in [-1, 1], ``(N, C, H, W)``."""
    u8 = np.stack([decode_image(f, image_size, channels) for f in list_images(root)])
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


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

    x = _decoded(tmp_path, 8, 3)
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    white, black, noise, rgba, grey, red = x  # sorted by path: a, b, c, e, f, nested/d
    assert torch.equal(white, torch.ones(3, 8, 8))
    assert torch.equal(black, -torch.ones(3, 8, 8))
    assert torch.equal(rgba, torch.ones(3, 8, 8))
    assert torch.equal(red[0], torch.ones(8, 8)) and torch.equal(red[1:], -torch.ones(2, 8, 8))
    assert torch.allclose(grey, torch.full((3, 8, 8), 128 / 127.5 - 1), atol=3 / 127.5)  # JPEG
    assert noise.std() > 0.1

    grey1 = _decoded(tmp_path, 4, 1)
    assert grey1.shape == (6, 1, 4, 4)
    assert torch.equal(grey1[0], torch.ones(1, 4, 4)) and torch.equal(grey1[1], -torch.ones(1, 4, 4))


def test_image_folder_errors(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="missing"):
        prepare_image_folder(tmp_path / "missing", 8, 3, cache_dir=cache)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="data_dir") as e:
        prepare_image_folder(empty, 8, 3, cache_dir=cache)
    assert str(empty) in str(e.value)

    corrupt = tmp_path / "corrupt"
    _write(corrupt / "good.png", np.zeros((8, 8, 3), np.uint8))
    (corrupt / "zz_bad.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="zz_bad.png"):
        prepare_image_folder(corrupt, 8, 3, cache_dir=cache)

    truncated = tmp_path / "truncated"
    _write(truncated / "t.png", np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = (truncated / "t.png").read_bytes()
    (truncated / "t.png").write_bytes(data[: len(data) // 2])  # a valid header, then the file stops
    with pytest.raises(ValueError, match="t.png"):
        prepare_image_folder(truncated, 8, 3, cache_dir=cache)

    with pytest.raises(ValueError, match="channels"):
        prepare_image_folder(corrupt, 8, 2, cache_dir=cache)


# Decoding (decode_image, what the prepared folders hold).

@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i4"])  # PIL modes I;16, I;16B, I
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path, dtype):
    # A 16x16 gradient over 0..65535, plus values next to rounding boundaries (128 -> 0, 129 -> 1 of 257).
    v = np.linspace(0, 65535, 256).round().astype(np.int64)
    v[1:5] = [128, 129, 385, 386]
    arr = v.reshape(16, 16)
    want = np.round(arr * 255 / 65535).astype(np.uint8)
    assert list(want.ravel()[1:5]) == [0, 1, 1, 2] and want.min() == 0 and want.max() == 255
    im = Image.fromarray(arr.astype(dtype))
    assert im.mode == {"<u2": "I;16", ">u2": "I;16B", "<i4": "I"}[dtype]
    assert np.array_equal(images._to_mode(im, "L"), want)  # each 16-bit mode, in memory

    _write(tmp_path / "g16.png", arr.astype(np.uint16))  # a 16-bit PNG file
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode in images._SIXTEEN_BIT
    assert np.array_equal(decode_image(tmp_path / "g16.png", 16, 1)[..., 0], want)
    assert np.array_equal(decode_image(tmp_path / "g16.png", 16, 3), np.repeat(want[..., None], 3, 2))
    assert np.array_equal(prepare_image_folder(tmp_path, 16, 1).images[0, ..., 0], want)


PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 90]], np.uint8)


@pytest.mark.parametrize("transparency", [None, 1, bytes([255, 0, 128, 255])])
def test_palette_images_give_their_palette_colours(tmp_path, transparency):
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 3, 3], [0, 2, 0, 2]], np.uint8)
    im = Image.fromarray(index).convert("P")
    im.putpalette(PALETTE.ravel().tolist() + [0] * (256 * 3 - PALETTE.size))
    im.save(tmp_path / "p.png", **({} if transparency is None else {"transparency": transparency}))
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P" and check.info.get("transparency") == transparency
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns when bytes transparency is converted to RGB directly
        rgb = decode_image(tmp_path / "p.png", 4, 3)
        grey = decode_image(tmp_path / "p.png", 4, 1)
    assert np.array_equal(rgb, PALETTE[index])
    # L is ITU-R 601-2 luma, as PIL computes it from RGB: red 76, green 150, blue 29.
    luma = np.asarray(Image.fromarray(PALETTE[None]).convert("L"))[0]
    assert list(luma[:3]) == [76, 150, 29]
    assert np.array_equal(grey[..., 0], luma[index])


def test_alpha_is_dropped_and_luma_taken_from_rgb(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = PALETTE[np.arange(16).reshape(4, 4) % 4]
    rgba[..., 3] = np.arange(16).reshape(4, 4) * 17  # alpha 0..255
    _write(tmp_path / "rgba.png", rgba)
    la = np.stack([np.arange(16).reshape(4, 4) * 16, np.full((4, 4), 9)], -1).astype(np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.array_equal(decode_image(tmp_path / "rgba.png", 4, 3), rgba[..., :3])
    luma = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"))
    assert np.array_equal(decode_image(tmp_path / "rgba.png", 4, 1)[..., 0], luma)
    assert np.array_equal(decode_image(tmp_path / "la.png", 4, 1)[..., 0], la[..., 0])
    assert np.array_equal(decode_image(tmp_path / "la.png", 4, 3), np.repeat(la[..., :1], 3, 2))


@pytest.mark.parametrize("limit", [1000, 500])  # 1,600 pixels: over 1x the limit (PIL warns), over 2x (PIL raises)
def test_decompression_bomb_is_a_one_line_error(tmp_path, monkeypatch, limit):
    _write(tmp_path / "zz_big.png", np.zeros((40, 40, 3), np.uint8))  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    if limit == 1000:  # under the limit: no warning, no error
        _write(tmp_path / "small.png", np.zeros((30, 30, 3), np.uint8))  # 900 pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert decode_image(tmp_path / "small.png", 8, 3).shape == (8, 8, 3)
    for call in (lambda: decode_image(tmp_path / "zz_big.png", 8, 3), lambda: prepare_image_folder(tmp_path, 8, 3)):
        with pytest.raises(ValueError, match=r"zz_big\.png.*1,600 pixels") as e:
            call()
        assert "\n" not in str(e.value) and f"({limit:,})" in str(e.value)


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _write(tmp_path / "a.png", np.full((4, 4, 3), 255, np.uint8))
    _write(tmp_path / ".cache" / "b.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork, not a PNG")
    assert list_images(tmp_path) == [tmp_path / "a.png"]
    assert np.array_equal(prepare_image_folder(tmp_path, 4, 3).images, np.full((1, 4, 4, 3), 255, np.uint8))


def test_bad_settings(tmp_path):
    _write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    for size in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="image_size must be a positive int"):
            prepare_image_folder(tmp_path, size, 3)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        decode_image(tmp_path / "a.png", 4, 4)
