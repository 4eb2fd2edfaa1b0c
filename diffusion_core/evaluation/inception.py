"""The FID Inception-v3 network, loaded from a weights file the user supplies, and its 2048 pool3 features.

The network is the one pytorch-fid computes FID with: Heusel et al.'s TensorFlow graph of Inception-v3 (the
2015-12-05 release) ported to torchvision's ``Inception3`` layout with 1008 logits, and TensorFlow's variants of
three blocks: the 35x35, 17x17 and first 8x8 blocks average-pool without counting the zero padding
(``count_include_pad=False``), and the last 8x8 block's pool branch is a max pool. The features are the 2048
averages of the last block's output (``pool3``); the logits are loaded, never used.

The weights are the file pytorch-fid downloads, ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` is the same file). Nothing here downloads it: the user does, and
:func:`load_inception` checks its size and SHA-256 before ``torch.load(..., weights_only=True)`` reads it and
matches its keys strictly.

The resize convention is pytorch-fid's (:func:`preprocess`): our images in [-1, 1] are mapped to [0, 1], one
channel is repeated to three, a bilinear resize to 299x299 (``F.interpolate``, ``align_corners=False``, no
antialiasing) follows, then ``2x - 1``. Numbers are comparable with pytorch-fid's and torchmetrics-style
pipelines, not with clean-fid's, whose PIL bicubic resize gives different features.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInput

__all__ = ["FIDInceptionV3", "INCEPTION_BYTES", "INCEPTION_FILE", "INCEPTION_SHA256", "INCEPTION_URL",
           "SIDE", "check_weights_file", "inception_features", "load_inception", "preprocess", "sha256_of"]

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_BYTES = 95_628_359
SIDE = 299  # the network's input size
OPTION = "--inception-weights"


def _unit(cin: int, cout: int, kernel, stride: int = 1, padding=0) -> nn.Sequential:
    """Convolution without bias, batch norm (TensorFlow's epsilon 1e-3), ReLU: keys ``conv.*`` and ``bn.*``."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                                     bn=nn.BatchNorm2d(cout, eps=1e-3), relu=nn.ReLU()))


def _tf_avg_pool() -> nn.AvgPool2d:
    """TensorFlow's 3x3 average pool: the zero padding is left out of each average."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _Block35(nn.Module):
    """Mixed_5b..5d (torchvision's InceptionA)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _unit(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _unit(cin, 48, 1), _unit(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _unit(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _unit(64, 96, 3, padding=1), _unit(96, 96, 3, padding=1)
        self.branch_pool, self.pool = _unit(cin, pool_features, 1), _tf_avg_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(self.pool(x))], 1)


class _Reduce35(nn.Module):
    """Mixed_6a (InceptionB): 35x35 -> 17x17."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _unit(cin, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _unit(cin, 64, 1), _unit(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _unit(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)], 1)


class _Block17(nn.Module):
    """Mixed_6b..6e (InceptionC): factorised 7x7 convolutions."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _unit(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = _unit(cin, c7, 1), _unit(c7, c7, **row), \
            _unit(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _unit(cin, c7, 1), _unit(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = _unit(c7, c7, **row), _unit(c7, c7, **col)
        self.branch7x7dbl_5 = _unit(c7, 192, **row)
        self.branch_pool, self.pool = _unit(cin, 192, 1), _tf_avg_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for i in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{i}")(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(self.pool(x))], 1)


class _Reduce17(nn.Module):
    """Mixed_7a (InceptionD): 17x17 -> 8x8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _unit(cin, 192, 1), _unit(192, 320, 3, stride=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _unit(cin, 192, 1), _unit(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _unit(192, 192, (7, 1), padding=(3, 0)), _unit(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        long = x
        for i in range(1, 5):
            long = getattr(self, f"branch7x7x3_{i}")(long)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), long, F.max_pool2d(x, 3, stride=2)], 1)


class _Block8(nn.Module):
    """Mixed_7b, 7c (InceptionE): the pool branch averages (7b) or, in TensorFlow's graph, takes the max (7c)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        wide, tall = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        self.branch1x1 = _unit(cin, 320, 1)
        self.branch3x3_1, self.branch3x3_2a, self.branch3x3_2b = _unit(cin, 384, 1), _unit(384, 384, **wide), \
            _unit(384, 384, **tall)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _unit(cin, 448, 1), _unit(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = _unit(384, 384, **wide), _unit(384, 384, **tall)
        self.branch_pool = _unit(cin, 192, 1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _tf_avg_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a), self.branch3x3dbl_3a(b),
                          self.branch3x3dbl_3b(b), self.branch_pool(self.pool(x))], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (see the module's docstring); :meth:`forward` takes images already preprocessed
    (:func:`preprocess`: 3 x 299 x 299, in [-1, 1]) and returns their 2048 pool3 features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _unit(3, 32, 3, stride=2), _unit(32, 32, 3)
        self.Conv2d_2b_3x3 = _unit(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = _unit(64, 80, 1), _unit(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _Block35(192, 32), _Block35(256, 64), _Block35(288, 64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b, self.Mixed_6c = _Block17(768, 128), _Block17(768, 160)
        self.Mixed_6d, self.Mixed_6e = _Block17(768, 160), _Block17(768, 192)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = _Reduce17(768), _Block8(1280, False), _Block8(2048, True)
        self.fc = nn.Linear(2048, 1008)  # the 1008 logits: part of the file, not of the features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _where_to_get() -> str:
    return (f"download {INCEPTION_FILE} ({INCEPTION_BYTES:,} bytes, SHA-256 {INCEPTION_SHA256}) from {INCEPTION_URL} "
            f"and pass its path")


def check_weights_file(path: str | Path, sha256: str | None = None) -> None:
    """Refuse (:class:`InvalidInput`, one line naming ``--inception-weights``) a missing file, or one whose size
    (checked for the official file only) or SHA-256 differs from the expected. ``sha256=None``: the official
    file's (the module's ``INCEPTION_SHA256`` and ``INCEPTION_BYTES``, read at call time)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InvalidInput(f"{OPTION} {str(path)!r} {what}; {_where_to_get()}")
    expected = sha256 or INCEPTION_SHA256
    size = path.stat().st_size
    if sha256 is None and size != INCEPTION_BYTES:
        raise InvalidInput(f"{OPTION} {str(path)!r} is {size:,} bytes, not the {INCEPTION_BYTES:,} of {INCEPTION_FILE} "
                           f"(a partial download or another file); {_where_to_get()}")
    actual = sha256_of(path)
    if actual != expected.lower():
        raise InvalidInput(f"{OPTION} {str(path)!r} has SHA-256 {actual}, expected {expected} ({INCEPTION_FILE}); "
                           f"{_where_to_get()}")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a file with the right hash always loads; this is for a caller's own hash
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise InvalidInput(f"{OPTION} {str(path)!r} is not a weights file torch.load can read safely ({first})") \
            from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInput(f"{OPTION} {str(path)!r} does not hold a state dict of tensors")
    return state


def load_inception(path: str | Path, sha256: str | None = None) -> FIDInceptionV3:
    """The FID Inception-v3 with the weights in ``path``, checked first (:func:`check_weights_file`; ``sha256``
    None: the official file's), keys matched strictly; in evaluation mode, float32, on the CPU."""
    check_weights_file(path, sha256)
    state = _read_state(Path(path))
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file (keys matched strictly)
        net = FIDInceptionV3()
    net = net.to_empty(device="cpu")
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):  # the one buffer an older file may leave out; torch then keeps ours
            module.num_batches_tracked.zero_()
    try:
        result = net.load_state_dict(state, strict=False)  # strictness checked below, for a one-line message
    except RuntimeError as e:
        raise InvalidInput(f"{OPTION} {str(path)!r}: its tensors' shapes do not fit the FID Inception-v3 "
                           f"({str(e).splitlines()[-1].strip()[:200]})") from None
    if result.missing_keys or result.unexpected_keys:
        raise InvalidInput(f"{OPTION} {str(path)!r}: its keys do not match the FID Inception-v3 "
                           f"({len(result.missing_keys)} missing, e.g. {result.missing_keys[:2]}; "
                           f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:2]})")
    return net.float().eval().requires_grad_(False)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's input convention for images ``(N, C, H, W)`` in [-1, 1], C 1 or 3: to [0, 1], one channel
    repeated to three, bilinear resize to 299x299 (``align_corners=False``, no antialiasing; none when already
    299x299), then ``2x - 1``. Values outside [-1, 1] are used as they are."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InvalidInput(f"the Inception-v3 features are for images (N, C, H, W) with C 1 or 3, got {tuple(x.shape)}")
    x = (x.float() + 1) / 2
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[2:] != (SIDE, SIDE):
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=False)
    return 2 * x - 1


def inception_features(net: FIDInceptionV3, images: np.ndarray, batch_size: int = 50,
                       device: str | torch.device | None = None) -> np.ndarray:
    """The 2048 pool3 features (float64, ``(N, 2048)``) of ``images`` in [-1, 1], ``batch_size`` at a time, in
    float32 on ``device`` (None: CUDA when available, else the CPU)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = net.to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(np.asarray(images[start:start + batch_size]), dtype=torch.float32)
            out.append(net(preprocess(batch.to(device))).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2048))
