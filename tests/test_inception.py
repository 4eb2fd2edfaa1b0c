"""``eval --features inception-v3``: the FID Inception-v3 against torch-fidelity's, its resize convention, the
weights file's checks and the command end to end, all with network sockets refused.

No real weights are used (nothing may be downloaded): a seeded random state dict in torch-fidelity's key layout is
saved as a ``.pth`` and loaded both ways. torch-fidelity 0.4.0's package ``__init__`` imports torchvision, which
does not load beside the CPU build of torch, so the test imports ``feature_extractor_inceptionv3`` and the few
sibling modules it needs without that ``__init__`` (``support.torch_fidelity_modules``), much as
``test_peers_kdiffusion.py`` loads ``k_diffusion.sampling``. Install it with ``pip install --no-deps
torch-fidelity==0.4.0`` (the README's test command does); those tests are skipped with the reason when it is
missing.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import socket
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusion_core.cli import main
from diffusion_core.errors import InvalidInput
from diffusion_core.evaluation import feature_network
from diffusion_core.evaluation import inception as inc
from support import torch_fidelity_modules

TOLERANCE = 1e-5  # relative, in norm per image, float32


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Every test here runs with network sockets refused (as test_eval.py's offline test does)."""
    def refuse(*args, **kwargs):
        raise OSError("network access during the Inception tests")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        with pytest.raises(OSError, match="network access"):
            socket.create_connection(("127.0.0.1", 9))
        yield


def _fidelity():
    """torch-fidelity's ``feature_extractor_inceptionv3`` without the package's ``__init__``, or a skip."""
    with torch_fidelity_modules() as installed:
        if not installed:
            pytest.skip("torch-fidelity is a peer: pip install --no-deps torch-fidelity==0.4.0 (see the README)")
        return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")


def _random_state(layout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Seeded random weights for ``layout``'s keys and shapes, scaled so that the activations stay of order 1."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, v in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("conv.weight"):
            state[key] = torch.randn(v.shape, generator=g) * (2 / v[0].numel()) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            state[key] = 0.8 + 0.4 * torch.rand(v.shape, generator=g)
        else:  # bn.bias, running_mean, fc
            state[key] = 0.1 * torch.randn(v.shape, generator=g)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, str]:
    """A random-weights file in torch-fidelity's key layout (ours where torch-fidelity is missing) and its SHA-256."""
    if importlib.util.find_spec("torch_fidelity") is not None:
        fidelity = _fidelity()
        cls = fidelity.FeatureExtractorInceptionV3
        with mock.patch.object(cls, "load_state_dict", lambda self, state: None), \
                mock.patch.object(fidelity, "load_state_dict_from_url", lambda *a, **k: {}), torch.device("meta"):
            layout = cls("inception-v3-compat", ["2048"]).state_dict()  # its keys and shapes; nothing loaded
    else:
        with torch.device("meta"):
            layout = inc.FIDInceptionV3().state_dict()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(_random_state(layout), path)
    return path, inc.sha256_of(path)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two 299x299 RGB images, uint8: no resize on either side."""
    return torch.randint(0, 256, (2, 3, inc.SIDE, inc.SIDE), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8)


@pytest.fixture(scope="module")
def fidelity_features(weights, images) -> torch.Tensor:
    fidelity = _fidelity()
    extractor = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                     feature_extractor_weights_path=str(weights[0]))
    with torch.no_grad():
        return extractor(images)[0]


@pytest.fixture(scope="module")
def net(weights) -> inc.FIDInceptionV3:
    return inc.load_inception(weights[0], sha256=weights[1])


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest over the images of |ours - theirs| / |theirs| (norms of the 2048 features)."""
    return float(((ours - theirs).norm(dim=1) / theirs.norm(dim=1)).max())


def _ours_on_fidelity_input(net, images) -> torch.Tensor:
    """Our features through the public path (:func:`inception_features`, one image per batch): torch-fidelity maps
    uint8 u to (u - 128) / 128 where pytorch-fid's convention gives (u - 127.5) / 127.5, so ours is fed the images
    that preprocess to torch-fidelity's values (at 299x299 preprocessing is x -> (x + 1) / 2 -> 2y - 1)."""
    x = ((images.double() - 128) / 128).numpy()
    return torch.from_numpy(inc.inception_features(net, x, batch_size=1, device="cpu")).float()


def test_pool3_features_agree_with_torch_fidelity(net, images, fidelity_features):
    ours = _ours_on_fidelity_input(net, images)
    assert ours.shape == fidelity_features.shape == (2, 2048)
    assert fidelity_features.norm(dim=1).min() > 1  # features of order 1: the random weights neither vanish nor explode
    assert _relative_error(ours, fidelity_features) < TOLERANCE


def test_the_agreement_check_is_sensitive_to_the_fid_variants(net, images, fidelity_features):
    """torchvision's own blocks instead of TensorFlow's: counting the padding in one average pool, or averaging
    in the last block, moves the features far beyond the tolerance."""
    for block, pool in (("Mixed_5b", torch.nn.AvgPool2d(3, 1, 1, count_include_pad=True)),
                        ("Mixed_7c", torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False))):
        tf_pool = getattr(net, block).pool
        getattr(net, block).pool = pool
        try:
            moved = _relative_error(_ours_on_fidelity_input(net, images[:1]), fidelity_features[:1])
        finally:
            getattr(net, block).pool = tf_pool
        assert moved > 100 * TOLERANCE, (block, moved)


def test_preprocessing_is_pytorch_fids_resize():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 20, generator=g) * 2 - 1
    y = (x + 1) / 2
    expected = 2 * F.interpolate(y, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert torch.allclose(inc.preprocess(x), expected, atol=1e-6, rtol=0)
    grey = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    out = inc.preprocess(grey)
    assert out.shape == (2, 3, 299, 299)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert torch.allclose(out, inc.preprocess(grey.expand(-1, 3, -1, -1)), atol=1e-6, rtol=0)
    full = torch.rand(1, 3, 299, 299, generator=g) * 2 - 1
    assert torch.allclose(inc.preprocess(full), full, atol=1e-6, rtol=0)  # no resize at 299x299
    with pytest.raises(InvalidInput, match="for images"):
        inc.preprocess(torch.zeros(2, 2, 8, 8))


def test_weights_files_are_checked(weights, tmp_path):
    path, digest = weights
    changed = tmp_path / "changed.pth"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match=f"--inception-weights .*has SHA-256 .*, expected {digest}"):
        inc.load_inception(changed, sha256=digest)
    official = re.escape(inc.INCEPTION_SHA256)
    with pytest.raises(InvalidInput, match=f"does not exist; download {inc.INCEPTION_FILE}.*{official}.*"
                                           f"{re.escape(inc.INCEPTION_URL)}"):
        inc.load_inception(tmp_path / "absent.pth")
    with pytest.raises(InvalidInput, match=f"is a folder; download {inc.INCEPTION_FILE}"):
        inc.load_inception(tmp_path)
    with pytest.raises(InvalidInput, match=r"--inception-weights .* is [\d,]+ bytes, not the 95,628,359"):
        inc.load_inception(path)  # the official file expected: this one is refused by its size, unhashed
    extra = tmp_path / "extra.pth"
    torch.save({"extra.weight": torch.zeros(1)}, extra)
    with pytest.raises(InvalidInput, match=r"keys do not match .*\(472 missing, .*1 unexpected, e.g. \['extra"):
        inc.load_inception(extra, sha256=inc.sha256_of(extra))
    shapes = tmp_path / "shapes.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, shapes)
    with pytest.raises(InvalidInput, match="shapes do not fit the FID Inception-v3 .*fc.weight"):
        inc.load_inception(shapes, sha256=inc.sha256_of(shapes))
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(InvalidInput, match="does not hold a state dict"):
        inc.load_inception(listed, sha256=inc.sha256_of(listed))


def _one_line_error(args, capsys) -> str:
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("diffusion-core eval: error: "), err
    return err


def test_the_command_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DIFFUSION_CORE_INCEPTION_WEIGHTS", raising=False)
    rgb, points = tmp_path / "rgb.npy", tmp_path / "points.npy"
    np.save(rgb, np.zeros((8, 3, 16, 16), dtype=np.float32))
    np.save(points, np.zeros((8, 2), dtype=np.float32))
    base = [str(rgb), "--reference", str(rgb)]
    err = _one_line_error([*base, "--features", "inception-v3"], capsys)
    assert "needs --inception-weights FILE" in err and inc.INCEPTION_SHA256 in err and inc.INCEPTION_URL in err
    err = _one_line_error([*base, "--features", "inception-v3", "--inception-weights", str(tmp_path / "no.pth")],
                          capsys)
    assert "--inception-weights" in err and "does not exist" in err and inc.INCEPTION_SHA256 in err
    assert "is for images" in _one_line_error([str(points), "--reference", str(points), "--features",
                                               "inception-v3", "--inception-weights", "x.pth"], capsys)
    assert "--inception-weights is for --features inception-v3, not raw" in _one_line_error(
        [*base, "--features", "raw", "--inception-weights", "x.pth"], capsys)
    monkeypatch.setenv("DIFFUSION_CORE_INCEPTION_WEIGHTS", str(tmp_path / "from-env.pth"))
    with pytest.raises(InvalidInput, match="from-env.pth' does not exist"):
        feature_network("inception-v3", (3, 16, 16))


def test_eval_with_inception_features_end_to_end(weights, tmp_path, monkeypatch, capsys):
    """The command on 16x16 RGB images (resized to 299x299) with the random weights, their hash standing in for the
    official one."""
    path, digest = weights
    monkeypatch.setattr(inc, "INCEPTION_SHA256", digest)
    monkeypatch.setattr(inc, "INCEPTION_BYTES", path.stat().st_size)
    g = np.random.default_rng(3)
    samples, reference, report = tmp_path / "samples.npy", tmp_path / "reference.npy", tmp_path / "report.json"
    np.save(samples, g.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32))
    np.save(reference, g.uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32))
    assert main(["eval", str(samples), "--reference", str(reference), "--features", "inception-v3",
                 "--inception-weights", str(path), "--sizes", "2", "--k", "1", "--kid-subsets", "4",
                 "--kid-subset-size", "2", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "features:  inception-v3: 2048 pool3 features of the FID Inception-v3" in out
    assert "bilinear resize to 299x299" in out and "not clean-fid's" in out
    saved = json.loads(report.read_text())
    assert saved["feature_network"] == "inception-v3" and saved["num_samples"] == 2
    fd = next(m for m in saved["metrics"] if m["name"] == "FD")["at_n"][0]
    assert np.isfinite(fd["value"]) and fd["value"] > 0
