"""``diffusion-core train`` and ``diffusion-core sample``.

Every ``train`` option is a field of :class:`~diffusion_core.train.TrainConfig`, so the command line, the
Python API and the config stored in a checkpoint never disagree. What a user causes (a bad argument, a bad or
corrupt file, an unwritable folder, a full disk, a diverged run) prints one line and exits 2; anything else is
a bug in diffusion_core and keeps its traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
import typing
from enum import Enum
from pathlib import Path

import numpy as np

from .errors import InvalidInput, NonFiniteError

__all__ = ["main", "build_parser"]

_HELP = {
    "dataset": "training data: built-in digits or 2-D toy sets, or 'folder' with --data-dir",
    "data_dir": "folder of PNG/JPEG images (with --dataset folder)",
    "image_size": "resize folder images to this size (default: the preset's)",
    "model": "U-Net preset (ddpm-cifar10, digits-8, mnist-28, tiny-32, tiny) or 'mlp' for 2-D toy sets",
    "schedule": "noise schedule of the betas",
    "num_timesteps": "number of diffusion steps T",
    "parameterization": "what the network predicts",
    "variance": "variance of the reverse step; learned_range needs --vlb-weight > 0",
    "loss_type": "distance in the simple loss",
    "min_snr_gamma": "min-SNR-gamma loss weighting (Hang et al. 2023), e.g. 5",
    "vlb_weight": "lambda of the hybrid loss (improved DDPM uses 0.001)",
    "steps": "optimizer steps in total (a resumed run continues up to this)",
    "batch_size": "global batch size (split over torchrun processes)",
    "lr": "peak learning rate of AdamW",
    "warmup_steps": "linear learning-rate warmup steps",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "clip the global gradient norm to this",
    "ema_decay": "decay of the weights' exponential moving average",
    "precision": "autocast precision (auto: bf16 where the hardware has it, else fp32)",
    "compile": "torch.compile the network (default: on for CUDA)",
    "channels_last": "channels_last memory format for image models (default: on; faster on CUDA and the CPU)",
    "seed": "random seed of weights, data order and noise",
    "class_cond": "class-conditional model (labels: digits 0-9, two-moons, 8-gaussians, or one subfolder per class)",
    "p_uncond": "with --class-cond: probability of training with the null label (for classifier-free guidance)",
    "hflip": "random horizontal flips (default: on for --dataset folder, off otherwise)",
    "workers": "DataLoader worker processes streaming an image folder (default: 2 on CUDA, 0 on the CPU)",
    "out_dir": "folder for checkpoint.safetensors, config.json, metrics.jsonl and PNGs "
               "(default: runs/<dataset>, or the --resume checkpoint's folder)",
    "log_every": "log to metrics.jsonl and the progress bar (and check the loss for NaN/Inf) every this many steps",
    "checkpoint_every": "write the checkpoint every this many steps (also at the end and on Ctrl-C)",
    "checkpoint_minutes": "also write it when this many minutes passed since the last one (0: off)",
    "preview_every": "write a preview grid every this many steps (0: only at the end)",
    "device": "auto, cpu, cuda or cuda:N",
}


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _arg_type(tp):
    """argparse type and choices for a TrainConfig field's annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = args[0]
    if isinstance(base, type) and issubclass(base, Enum):
        return {"type": str, "choices": [m.value for m in base]}
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": base}


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    from . import __version__

    parser = _Parser(prog="diffusion-core", description="Train and sample DDPM/DDIM models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model (default: the 8x8 digits model on the CPU)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        default = f.default.value if isinstance(f.default, Enum) else f.default
        tr.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default, help=_HELP[f.name], **_arg_type(hints[f.name]))
    tr.add_argument("--resume", default=None, help="continue from this checkpoint (only optimizer settings and "
                    "run control may change; its folder is the default --out-dir)")
    tr.add_argument("--overwrite", action="store_true", help="replace a run already in --out-dir (refused otherwise)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sa = sub.add_parser("sample", help="sample from a checkpoint into a PNG grid and a .npy file",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sa.add_argument("--checkpoint", required=True, help="a checkpoint.safetensors written by train")
    sa.add_argument("--out", default="samples.png", help="PNG grid (images) or scatter (2-D); the .npy goes beside it")
    sa.add_argument("--num", type=int, default=64, help="number of samples")
    sa.add_argument("--sampler", choices=list(_SAMPLERS), default="ddim",
                    help="DDIM; ancestral DDPM; DPM-Solver++(2M) (second order, good at 10-20 steps); "
                         "EDM's Heun (second order, 2*steps-1 network calls)")
    sa.add_argument("--steps", type=int, default=50, help="sampling steps (at most the model's T)")
    sa.add_argument("--spacing", default=None, help="timestep spacing: linspace, leading, trailing, log-snr, karras "
                    "(default: log-snr for heun, linspace otherwise)")
    sa.add_argument("--label", default=None, help="class to sample, by index or name (class-conditional models; "
                    "default: every class in turn, one per grid column)")
    sa.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale s as in diffusers "
                    "(1: none; Ho & Salimans' w = s - 1)")
    sa.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (--sampler ddim only)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    sa.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    sa.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sa.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="compile the whole sampling step (network and update); on CUDA each step then replays one CUDA graph "
                         "(default: on for CUDA, off for the CPU, where compiling takes longer than it saves)")
    sa.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _train(ns: argparse.Namespace) -> None:
    from .train import TrainConfig, train
    from .train.distributed import teardown_distributed

    fields = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        result = train(TrainConfig(**fields), resume=ns.resume, overwrite=ns.overwrite, progress=not ns.no_progress)
    finally:
        teardown_distributed()  # a torchrun launch leaves the process group cleanly
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")


def _check_out(out: Path) -> None:
    """Fail before sampling, not after, when the outputs cannot be written."""
    if out.is_dir():
        raise InvalidInput(f"--out {str(out)!r} is a folder; give a file name such as {str(out / 'samples.png')!r}")
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"--out must end in .png (the .npy goes beside it), got {str(out)!r}")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"--out {str(out)!r} cannot be written: {str(parent)!r} is not a writable folder")


def _samplers():
    from .samplers import ddim_sample, ddpm_sample
    from .solvers import dpmpp_2m_sample, heun_sample

    return {"ddim": ddim_sample, "ddpm": ddpm_sample, "dpmpp-2m": dpmpp_2m_sample, "heun": heun_sample}


_SAMPLERS = ("ddim", "ddpm", "dpmpp-2m", "heun")


def _labels(ns: argparse.Namespace, class_names: list[str], num: int, device):
    """The labels to sample: ``--label`` (an index or a class name) for all, or every class in turn."""
    import torch

    if not class_names:
        if ns.label is not None or ns.guidance != 1.0:
            raise InvalidInput("--label and --guidance need a class-conditional checkpoint (train with --class-cond)")
        return None
    if ns.label is None:
        return torch.arange(num, device=device) % len(class_names)
    if ns.label in class_names:
        k = class_names.index(ns.label)
    elif ns.label.isdigit() and int(ns.label) < len(class_names):
        k = int(ns.label)
    else:
        raise InvalidInput(f"--label must be a class index 0..{len(class_names) - 1} or one of {class_names}, "
                           f"got {ns.label!r}")
    return torch.full((num,), k, dtype=torch.long, device=device)


def _sample(ns: argparse.Namespace) -> None:
    import torch

    from .guidance import ClassifierFreeGuidance
    from .train import TrainConfig, load_checkpoint, load_model, resolve_device
    from .train.images import save_image_grid, save_scatter

    if ns.num < 1:
        raise InvalidInput(f"--num must be >= 1, got {ns.num}")
    if ns.eta and ns.sampler != "ddim":
        raise InvalidInput(f"--eta is for --sampler ddim only, got --sampler {ns.sampler}")
    out = Path(ns.out)
    _check_out(out)
    device = resolve_device(ns.device)
    ckpt = load_checkpoint(ns.checkpoint, map_location=device)
    config = TrainConfig.from_dict(ckpt.train_config)
    model = load_model(ckpt, ema=not ns.no_ema).to(device)
    diffusion = config.diffusion().to(device)
    labels = _labels(ns, ckpt.extra.get("class_names", []), ns.num, device)
    if labels is not None and ns.guidance != 1.0:
        model = ClassifierFreeGuidance(model, ns.guidance)
    # --compile compiles the whole sampling step (network and update): one CUDA graph replay per step on CUDA.
    compile = ns.compile if ns.compile is not None else device.type == "cuda"
    if ckpt.model_config["kind"] == "mlp":
        shape = (ns.num, ckpt.model_config["dim"])
    else:
        size, ch = ckpt.model_config["image_size"], ckpt.model_config["in_channels"]
        shape = (ns.num, ch, size, size)
    g = torch.Generator(device).manual_seed(ns.seed)
    x_T = torch.randn(shape, generator=g, device=device)
    options = {"eta": ns.eta} if ns.sampler == "ddim" else {}
    if ns.spacing is not None:
        options["spacing"] = ns.spacing
    try:
        x = _samplers()[ns.sampler](model, diffusion, x_T, steps=ns.steps, generator=g, progress=not ns.no_progress,
                                    compile=compile, labels=labels, **options).sample
    except NonFiniteError as e:  # the sampler checks its result once, at the end
        raise NonFiniteError(f"{e}; nothing was written (is the checkpoint from a diverged run?)") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    npy, tmp_npy, tmp_png = out.with_suffix(".npy"), out.with_name(f".{out.stem}.tmp.npy"), out.with_name(f".{out.stem}.tmp.png")
    try:  # both files appear whole, or neither changes
        with open(tmp_npy, "wb") as f:
            np.save(f, x.cpu().numpy())
        if x.ndim == 2:
            save_scatter(x, tmp_png)
        else:  # a conditional model's classes in turn: one class per column
            nrow = len(ckpt.extra["class_names"]) if labels is not None and ns.label is None else None
            save_image_grid(x, tmp_png, nrow=nrow, scale=max(1, 64 // x.shape[-1]))
        os.replace(tmp_npy, npy)
        os.replace(tmp_png, out)
    finally:
        tmp_npy.unlink(missing_ok=True)
        tmp_png.unlink(missing_ok=True)
    print(f"wrote {out} and {npy}")


# Errors of the user's file system: reported in one line with the path, like a bad argument.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG}


def main(argv: list[str] | None = None) -> int:
    from .train import TrainingInterrupted

    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(format=f"diffusion-core {ns.command}: %(message)s", level=logging.INFO)
    try:
        (_train if ns.command == "train" else _sample)(ns)
    except (InvalidInput, NonFiniteError, FileNotFoundError) as e:
        print(f"diffusion-core {ns.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _USER_ERRNOS:
            raise
        where = f" {e.filename!r}" if e.filename else ""
        print(f"diffusion-core {ns.command}: error:{where} {e.strerror}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"diffusion-core {ns.command}: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
