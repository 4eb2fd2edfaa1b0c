"""``diffusion-core export --to onnx``: the network alone, checked against onnxruntime on fresh inputs and batch
sizes other than the export's (1e-4 relative in float32), class-conditional networks with their null label, the MLP,
and the refusals. Skipped with the reason when onnx or onnxruntime is missing (the ``onnx`` extra)."""
from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install 'diffusion-core-torch[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'diffusion-core-torch[onnx]'")

from diffusion_core.errors import InvalidInput  # noqa: E402
from diffusion_core.nn import build_mlp, build_unet, get_preset  # noqa: E402
from diffusion_core.train import TrainConfig, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from diffusion_core.train.onnx_format import export_onnx  # noqa: E402
from support import run_cli  # noqa: E402


def _random(shapes: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else torch.zeros_like(v)
            for k, v in shapes.items()}


def make_checkpoint(path, *, classes: int = 0, kind: str = "unet"):
    """A checkpoint with random raw weights and different random EMA weights (every layer non-zero, so the output
    depends on every input)."""
    if kind == "unet":
        config = TrainConfig(dataset="digits", model="tiny", class_cond=classes > 0)
        fields = get_preset("tiny", in_channels=1, num_classes=classes).to_dict()
        with torch.device("meta"):
            shapes = build_unet(get_preset("tiny", in_channels=1, num_classes=classes)).state_dict()
    else:
        config = TrainConfig(dataset="two-moons", model="mlp", class_cond=classes > 0)
        from diffusion_core.nn import MLPConfig

        fields = MLPConfig(dim=2, num_classes=classes).to_dict()
        shapes = build_mlp(fields).state_dict()
    shapes = {k: torch.empty(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    extra = {"class_names": [str(k) for k in range(classes)]} if classes else {}
    return save_checkpoint(path, step=1, train_config=config.to_dict(), model_config={"kind": kind, **fields},
                           model=_random(shapes, 0), ema=_random(shapes, 1), extra=extra)


def _run(path, feeds: dict) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {k: v.numpy() for k, v in feeds.items()})[0])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("classes", [0, 3])
def test_the_unet_agrees_with_onnxruntime_at_any_batch_size(tmp_path, classes):
    ck = make_checkpoint(tmp_path / "ck.safetensors", classes=classes)
    result = export_onnx(ck, tmp_path / "net.onnx")
    assert result.ema and result.inputs == (["x", "t", "labels"] if classes else ["x", "t"])
    model = load_model(load_checkpoint(ck))  # the EMA weights, as exported
    for n in (1, 5):
        g = torch.Generator().manual_seed(n)
        x, t = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 1000, (n,), generator=g).float()
        feeds = {"x": x, "t": t}
        labels = None
        if classes:
            labels = torch.arange(n) % (classes + 1)  # the null label (3) among them
            feeds["labels"] = labels
        with torch.no_grad():
            ours = model(x, t, labels) if classes else model(x, t)
        theirs = _run(tmp_path / "net.onnx", feeds)
        assert ours.abs().max() > 1e-3 and rel_err(theirs, ours) < 1e-4, (n, rel_err(theirs, ours))


def test_the_mlp_agrees_and_the_metadata_says_what_the_inputs_are(tmp_path):
    ck = make_checkpoint(tmp_path / "ck.safetensors", kind="mlp")
    export_onnx(ck, tmp_path / "mlp.onnx", ema=False)
    model = load_model(load_checkpoint(ck), ema=False)
    x, t = torch.randn(7, 2, generator=torch.Generator().manual_seed(0)), torch.linspace(0, 999, 7)
    with torch.no_grad():
        ours = model(x, t)
    assert rel_err(_run(tmp_path / "mlp.onnx", {"x": x, "t": t}), ours) < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "mlp.onnx")).metadata_props}
    assert '"dataset": "two-moons"' in meta["train_config"] and "network_time" in meta["t"]


def test_refusals_and_the_command(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck.safetensors", classes=2)
    for out, match in ((tmp_path / "net.txt", "must be a file name ending in .onnx"),
                       (tmp_path, "must be a file name ending in .onnx")):
        with pytest.raises(InvalidInput, match=match):
            export_onnx(ck, out)
    (tmp_path / "taken.onnx").write_bytes(b"user's file")
    with pytest.raises(InvalidInput, match="exists; pass --overwrite"):
        export_onnx(ck, tmp_path / "taken.onnx")
    assert (tmp_path / "taken.onnx").read_bytes() == b"user's file"  # nothing overwritten
    code, stdout, err = run_cli(["export", "--checkpoint", ck, "--to", "onnx", tmp_path / "taken.onnx",
                                 "--overwrite"], capsys)
    assert code == 0 and "inputs x, t, labels" in stdout and "EMA weights" in stdout, err
    assert not list(tmp_path.glob(".*.tmp"))
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "taken.onnx")).metadata_props}
    assert meta["labels"].endswith("2 is the null label (classifier-free guidance)")
