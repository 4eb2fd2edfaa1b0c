"""``diffusion-core train``, ``diffusion-core distill``, ``diffusion-core sample``, ``diffusion-core eval`` and
``diffusion-core export``.

Every ``train`` option is a field of :class:`~diffusion_core.train.TrainConfig` (every ``distill`` option one of
:class:`~diffusion_core.train.distill.DistillConfig`), built from the field's declaration (its type, default and
help), so the command line, the Python API and the config stored in a checkpoint never disagree. What a user causes (a bad argument, a bad or
corrupt file, an unwritable folder, a full disk, a diverged run, a size the memory cannot hold) prints one line
and exits 2; Ctrl-C, from start-up on, prints one line and exits 130; anything else is a bug in diffusion_core and
keeps its traceback. ``sample`` lives in ``_cli_sample.py``, ``eval`` in ``_cli_eval.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import re
import sys
import typing
from enum import Enum

from .errors import InvalidInput, NonFiniteError

__all__ = ["main", "build_parser"]

class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, once: not where the help already states its default, not for ``None`` (the help says
    what happens then), a required option or an on/off flag."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.required or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


# A train error names a TrainConfig field, data_dir; on the command line it is --data-dir.
_FIELD = re.compile(r"\b([a-z]+(?:_[a-z]+)+)\b")


def _as_options(message: str, config_class: type | None = None) -> str:
    """``message`` with the config's field names (TrainConfig's by default) written as the options that set them
    (outside quoted values, such as paths)."""
    from .train import TrainConfig

    fields = {f.name for f in dataclasses.fields(config_class or TrainConfig)}
    parts = re.split(r"('[^']*'|\"[^\"]*\")", message)
    for i in range(0, len(parts), 2):
        parts[i] = _FIELD.sub(lambda m: "--" + m[1].replace("_", "-") if m[1] in fields else m[1], parts[i])
    return "".join(parts)


def _arg_type(tp):
    """argparse type and choices for a TrainConfig field's annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = args[0]
    if isinstance(base, type) and issubclass(base, Enum):
        return {"type": str, "choices": [m.value for m in base]}
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": base}


_SAMPLERS = ("ddim", "ddpm", "dpmpp-2m", "heun")


def build_parser() -> argparse.ArgumentParser:
    from .schedule import TimestepSpacing
    from .train import TrainConfig

    from ._version import __version__

    parser = _Parser(prog="diffusion-core", description="Train, sample and export DDPM/DDIM models, and measure "
                     "their samples.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model (default: the 8x8 digits model on the CPU)",
                        formatter_class=_HelpFormatter)
    _add_config_options(tr, TrainConfig)
    tr.add_argument("--resume", default=None, help="continue from this checkpoint (only optimizer settings and "
                    "run control may change; its folder is the default --out-dir)")
    tr.add_argument("--init-from", default=None, help="start from the weights of this checkpoint or diffusers folder "
                    "(fine-tuning: same network and model, a new run otherwise; not with --resume)")
    tr.add_argument("--overwrite", action="store_true", help="replace a run already in --out-dir (refused otherwise)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sa = sub.add_parser("sample", help="sample from a checkpoint into a PNG grid and a .npy file",
                        formatter_class=_HelpFormatter)
    sa.add_argument("--checkpoint", required=True, help="a checkpoint.safetensors written by train, or a diffusers "
                    "folder (a UNet2DModel and its scheduler config) whose network maps onto our U-Net")
    sa.add_argument("--out", default="samples.png", help="PNG grid (images) or scatter (2-D); the .npy goes beside it "
                    "(an existing file is refused unless --overwrite)")
    sa.add_argument("--num", type=int, default=64, help="number of samples")
    sa.add_argument("--sampler", choices=list(_SAMPLERS), default=None,
                    help="DDIM (Euler on rectified flow and EDM); ancestral DDPM; DPM-Solver++(2M) (second order, good "
                         "at 10-20 steps); EDM's Heun (second order, 2*steps-1 network calls). Default: the path's, "
                         "ddim on vp and rectified flow, heun on edm")
    sa.add_argument("--steps", type=int, default=None, help="sampling steps, at most the model's T (default: 50, or "
                    "the step count a distilled checkpoint was distilled for, on its own grid)")
    sa.add_argument("--spacing", default=None, choices=[m.value for m in TimestepSpacing] + ["uniform"],
                    help="timestep spacing (default: karras for heun; otherwise linspace on vp, uniform in t on "
                         "rectified flow, karras on edm); uniform is for the continuous paths only")
    sa.add_argument("--sigma-max", type=float, default=None, help="start at the last step whose sigma/alpha is at "
                    "most this (default: 80, EDM's, for heun; the schedule's last step otherwise)")
    sa.add_argument("--label", default=None, help="class to sample, by index or name (class-conditional models; "
                    "default: every class in turn, one per grid column)")
    sa.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale s as in diffusers "
                    "(1: none; Ho & Salimans' w = s - 1); a student distilled with --guidance already includes its "
                    "own, and another s is applied on top of it, with a warning")
    sa.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (--sampler ddim only)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    sa.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    sa.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sa.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="compile the whole sampling step (network and update); on CUDA each step then replays one CUDA graph "
                         "(default: on for CUDA, off for the CPU, where compiling takes longer than it saves)")
    sa.add_argument("--overwrite", action="store_true", help="replace --out and its .npy if they exist")
    sa.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    from ._cli_eval import add_eval_parser

    add_eval_parser(sub, _HelpFormatter)
    _add_export(sub)
    _add_distill(sub)
    return parser


def _add_config_options(parser: argparse.ArgumentParser, config_class: type, required: tuple[str, ...] = ()) -> None:
    """One option per field of ``config_class`` (TrainConfig, DistillConfig), from its declaration."""
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        default = f.default.value if isinstance(f.default, Enum) else f.default
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default, help=f.metadata["help"],
                            required=f.name in required, **_arg_type(hints[f.name]))


def _add_distill(sub) -> None:
    from .train.distill import DistillConfig

    di = sub.add_parser("distill", help="distill a checkpoint into a few-step sampler (progressive distillation, or "
                        "reflow of a rectified-flow checkpoint); "
                        "the student is a checkpoint that sample uses with its step count",
                        formatter_class=_HelpFormatter)
    _add_config_options(di, DistillConfig, required=("checkpoint",))
    di.add_argument("--resume", default=None, help="continue the distillation run of this checkpoint exactly where it "
                    "stopped (the same options; only optimizer settings and run control may change; its folder is "
                    "the default --out-dir)")
    di.add_argument("--overwrite", action="store_true", help="replace a run already in --out-dir (refused otherwise)")
    di.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _distill(ns: argparse.Namespace) -> None:
    from .train.distill import DistillConfig, distill

    try:
        config = DistillConfig(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(DistillConfig)})
        result = distill(config, resume=ns.resume, overwrite=ns.overwrite, progress=not ns.no_progress)
    except (InvalidInput, FileNotFoundError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise type(e)(_as_options(str(e), DistillConfig)) from None
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")


def _add_export(sub) -> None:
    ex = sub.add_parser("export", help="write a checkpoint in another library's format (diffusers' DDPMPipeline "
                        "folder, or the network as ONNX)", formatter_class=_HelpFormatter)
    ex.add_argument("--checkpoint", required=True, help="a checkpoint.safetensors (diffusers: of a vp U-Net run)")
    ex.add_argument("--to", required=True, choices=["diffusers", "onnx"], help="the format: diffusers "
                    "(model_index.json, unet/, scheduler/; loads with DDPMPipeline.from_pretrained) or onnx (the "
                    "network alone, inputs x, t and for a class-conditional network labels; free batch size)")
    ex.add_argument("out", help="the folder (diffusers) or .onnx file (onnx) to write; an existing one is refused "
                    "unless --overwrite")
    ex.add_argument("--no-ema", action="store_true", help="write the raw weights (default: the EMA weights)")
    ex.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _export(ns: argparse.Namespace) -> None:
    if ns.to == "onnx":
        from .train.onnx_format import export_onnx

        result = export_onnx(ns.checkpoint, ns.out, ema=not ns.no_ema, overwrite=ns.overwrite)
        what = f"ONNX, inputs {', '.join(result.inputs)}; the sampling loop is not in the file"
    else:
        from .train.diffusers_format import export_diffusers

        result = export_diffusers(ns.checkpoint, ns.out, ema=not ns.no_ema, overwrite=ns.overwrite)
        what = "diffusers DDPMPipeline folder"
    which = ("the EMA weights (--no-ema for the raw ones)" if result.ema else
             "the raw weights" + ("" if ns.no_ema else " (the checkpoint holds no EMA)"))
    print(f"wrote {result.path} ({what}) with {which}")


def _train(ns: argparse.Namespace) -> None:
    from .train import TrainConfig, train
    from .train.runtime import teardown_distributed

    fields = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**fields)
        evaluator = None
        if config.eval_every:  # the evaluation package loads only when asked for
            from .evaluation import training_evaluator as evaluator
        result = train(config, resume=ns.resume, overwrite=ns.overwrite, progress=not ns.no_progress,
                       init_from=ns.init_from, evaluator=evaluator)
    except (InvalidInput, FileNotFoundError) as e:  # the options' names, not the config fields' (--data-dir)
        if isinstance(e, OSError) and e.errno is not None:  # the OS's own error: its path and reason as they are
            raise
        raise type(e)(_as_options(str(e))) from None
    finally:
        teardown_distributed()  # a torchrun launch leaves the process group cleanly
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")


# Errors of the user's file system: reported in one line with the path, like a bad argument.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG}


def _out_of_memory(e: BaseException) -> bool:
    """The allocator's failure (CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, Python's MemoryError)."""
    import torch

    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "not enough memory" in str(e)))


def _run(ns: argparse.Namespace) -> int:
    from .train import TrainingInterrupted

    prefix = f"diffusion-core {ns.command}"
    try:
        if ns.command == "train":
            _train(ns)
        elif ns.command == "distill":
            _distill(ns)
        elif ns.command == "export":
            _export(ns)
        elif ns.command == "eval":
            from ._cli_eval import run_eval

            run_eval(ns)
        else:
            from ._cli_sample import sample

            sample(ns)
    except (InvalidInput, NonFiniteError, FileNotFoundError) as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _USER_ERRNOS:
            raise
        where = f" {e.filename!r}" if e.filename else ""
        print(f"{prefix}: error:{where} {e.strerror}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        lower = {"train": "--batch-size or the model", "eval": "--max-n"}.get(ns.command, "--num")
        print(f"{prefix}: error: out of memory ({str(e).splitlines()[0][:200]}); lower {lower}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 prints escaped, not as a crash
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:  # Ctrl-C at any point, start-up (imports, argument parsing) included, ends in one line
        ns = build_parser().parse_args(argv)
        logging.basicConfig(format=f"diffusion-core {ns.command}: %(message)s", level=logging.INFO)
        return _run(ns)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
