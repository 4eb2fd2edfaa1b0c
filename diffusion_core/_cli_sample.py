"""``diffusion-core sample``: a checkpoint's samples into a PNG (grid or scatter) and a ``.npy`` beside it."""
from __future__ import annotations

import argparse
import io
import math
import os
import re
from pathlib import Path

import numpy as np

from .errors import InvalidInput, NonFiniteError

__all__ = ["sample"]


def _check_out(out: Path, overwrite: bool) -> None:
    """Fail before sampling, not after, when the outputs cannot be written or would replace a file."""
    if out.is_dir():
        raise InvalidInput(f"--out {str(out)!r} is a folder; give a file name such as {str(out / 'samples.png')!r}")
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"--out must end in .png (the .npy goes beside it), got {str(out)!r}")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"--out {str(out)!r} cannot be written: {str(parent)!r} is not a writable folder")
    npy = out.with_suffix(".npy")
    if npy.is_dir():
        raise InvalidInput(f"--out {str(out)!r} needs {str(npy)!r} for the samples, and that is a folder")
    existing = [str(f) for f in (out, npy) if f.exists()]
    if existing and not overwrite:
        raise InvalidInput(f"{' and '.join(repr(f) for f in existing)} exist{'s' if len(existing) == 1 else ''}; "
                           "pass --overwrite to replace them, or choose another --out")


def _write_samples(x, out: Path, draw) -> Path:
    """``out.npy`` (the samples) and ``out`` (``draw(path)`` renders the PNG): both appear whole, or neither
    changes. A failed write (a full disk) names the file it was for, not our temp file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    npy = out.with_suffix(".npy")
    tmp_npy, tmp_png = out.with_name(f".{out.stem}.tmp.npy"), out.with_name(f".{out.stem}.tmp.png")
    target = npy
    try:
        buf = io.BytesIO()
        np.save(buf, x.cpu().numpy())  # into memory: NumPy's own file writer reports a full disk without an errno
        with open(tmp_npy, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        target = out
        draw(tmp_png)
        os.replace(tmp_npy, npy)
        os.replace(tmp_png, out)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(target)) from None
    finally:
        tmp_npy.unlink(missing_ok=True)
        tmp_png.unlink(missing_ok=True)
    return npy


def _samplers():
    from .ddpm_samplers import ddim_sample, ddpm_sample, dpmpp_2m_sample, heun_sample

    return {"ddim": ddim_sample, "ddpm": ddpm_sample, "dpmpp-2m": dpmpp_2m_sample, "heun": heun_sample}


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
    elif re.fullmatch(r"[0-9]{1,9}", ns.label) and int(ns.label) < len(class_names):  # ASCII digits only: not '²'
        k = int(ns.label)
    else:
        raise InvalidInput(f"--label must be a class index 0..{len(class_names) - 1} or one of {class_names}, "
                           f"got {ns.label!r}")
    return torch.full((num,), k, dtype=torch.long, device=device)


def _sample_shape(mc: dict, num: int) -> tuple[int, ...]:
    from ._validation import check_fits_memory

    shape = (mc["dim"],) if mc["kind"] == "mlp" else (mc["in_channels"], mc["image_size"], mc["image_size"])
    # --num 1e12 (or a checkpoint claiming 1e9-pixel images) is refused in words, not by the allocator
    check_fits_memory("--num", num, 4 * 4 * math.prod(shape), "the samples (the state, the noise, the network's "
                      "output and the update)")
    return (num, *shape)


def _load(ns: argparse.Namespace, device):
    """The network, the run's config (None for a diffusers folder), the DDPM it samples (None on a continuous path),
    its model config, its class names and what it was distilled for (``None`` unless ``diffusion-core distill``
    wrote it: its grid, method and the guidance scale baked in), from our checkpoint or a diffusers folder."""
    from .train import TrainConfig, load_checkpoint, load_model
    from .train.config import TrainPath
    from .train.diffusers_format import is_diffusers_folder, load_diffusers
    from .train.distill_config import distilled_grid

    if is_diffusers_folder(ns.checkpoint):
        if ns.no_ema:
            raise InvalidInput("--no-ema is for our checkpoints: a diffusers folder holds one set of weights")
        imported = load_diffusers(ns.checkpoint)
        return (imported.network().to(device), None, imported.diffusion.to(device), imported.model_config,
                imported.class_names, None)
    ckpt = load_checkpoint(ns.checkpoint, map_location=device)
    config = TrainConfig.from_dict(ckpt.train_config)
    model = load_model(ckpt, ema=not ns.no_ema).to(device)
    diffusion = config.diffusion().to(device) if config.path is TrainPath.VP else None
    record = ckpt.extra.get("distillation")
    grid = distilled_grid(record, ns.checkpoint)
    return (model, config, diffusion, ckpt.model_config, ckpt.extra.get("class_names", []),
            None if grid is None else (grid.tolist(), record.get("method"), record.get("guidance", 1.0)))


def _sampling_plan(ns: argparse.Namespace, distilled) -> list[float] | None:
    """The distilled grid to sample on, or ``None`` for the usual sampler with ``ns.steps`` (set here to 50 when not
    given). ``distilled``: ``(grid, method, guidance)`` of a distilled checkpoint, else ``None``. A progressive student asked
    for another step count or sampler gets a warning: it was trained for DDIM on its own grid. A reflow student is
    a rectified flow like any other, its step count only the default: asked for others, it samples without one."""
    import logging

    if distilled is None:
        ns.steps = 50 if ns.steps is None else ns.steps
        return None
    grid, method, _ = distilled
    steps = len(grid) - 1
    other = [f"--steps {ns.steps}"] if ns.steps not in (None, steps) else []
    other += [f"--{k.replace('_', '-')} {v}" for k, v in (("sampler", ns.sampler), ("spacing", ns.spacing),
                                                          ("sigma_max", ns.sigma_max)) if v not in (None, "ddim")]
    other += [f"--eta {ns.eta}"] if ns.eta else []
    if not other:
        ns.steps = steps
        return grid
    if method == "reflow":
        ns.steps = steps if ns.steps is None else ns.steps
        return None
    logging.getLogger("diffusion_core").warning(
        "this checkpoint was distilled for %d DDIM steps on its own grid; sampling with %s as asked (leave them out "
        "to sample as distilled)", steps, ", ".join(other))
    ns.steps = steps if ns.steps is None else ns.steps
    return None


def _warn_guided(ns: argparse.Namespace, distilled) -> None:
    """A student distilled from a guided teacher (``distill --guidance S``) already samples the guided model; asked
    for ``--guidance`` other than 1, it gets a warning and that guidance on top of its own (its unconditional mode,
    the null label, was distilled too, so guiding it again is defined, but it is guidance compounded, not S)."""
    import logging

    baked = 1.0 if distilled is None else distilled[2]
    if baked != 1.0 and ns.guidance != 1.0:
        logging.getLogger("diffusion_core").warning(
            "this student already includes guidance %g (distilled from a guided teacher); applying --guidance %g on "
            "top of it as asked (leave --guidance out to sample it as distilled)", baked, ns.guidance)


def sample(ns: argparse.Namespace) -> None:
    import torch

    from ._validation import check_range, check_seed
    from .guidance import ClassifierFreeGuidance
    from .train import resolve_device
    from .train.config import TrainPath
    from .train.path_sampling import DEFAULT_SAMPLER

    check_range("--num", ns.num, low=1)
    if ns.eta and ns.sampler not in (None, "ddim"):
        raise InvalidInput(f"--eta is for --sampler ddim only, got --sampler {ns.sampler}")
    check_seed("--seed", ns.seed)
    out = Path(ns.out)
    _check_out(out, ns.overwrite)
    device = resolve_device(ns.device)
    model, config, diffusion, model_config, class_names, distilled = _load(ns, device)
    shape = _sample_shape(model_config, ns.num)
    labels = _labels(ns, class_names, ns.num, device)
    _warn_guided(ns, distilled)
    grid = _sampling_plan(ns, distilled)
    if grid is not None:
        _sample_distilled(ns, config, model, grid, shape, labels, class_names, out, device)
        return
    if diffusion is None:
        _sample_on_path(ns, config, model, shape, labels, class_names, out, device)
        return
    sampler = ns.sampler or DEFAULT_SAMPLER[TrainPath.VP]  # a diffusion: a vp checkpoint or a diffusers folder
    if labels is not None and ns.guidance != 1.0:
        model = ClassifierFreeGuidance(model, ns.guidance)
    # --compile compiles the whole sampling step (network and update): one CUDA graph replay per step on CUDA.
    compile = ns.compile if ns.compile is not None else device.type == "cuda"
    g = torch.Generator(device).manual_seed(ns.seed)
    x_T = torch.randn(shape, generator=g, device=device)
    options = {"eta": ns.eta} if sampler == "ddim" else {}
    if ns.spacing is not None:
        options["spacing"] = ns.spacing
    if ns.sigma_max is not None:
        options["sigma_max"] = ns.sigma_max
    try:
        x = _samplers()[sampler](model, diffusion, x_T, steps=ns.steps, generator=g, progress=not ns.no_progress,
                                    compile=compile, labels=labels, **options).sample
    except NonFiniteError as e:  # the sampler checks its result once, at the end
        raise NonFiniteError(f"{e}; nothing was written (is the checkpoint from a diverged run?)") from None
    _save(x, ns, labels, class_names, out)


def _save(x, ns: argparse.Namespace, labels, class_names: list[str], out: Path) -> None:
    from .train.images import save_image_grid, save_scatter

    if x.ndim == 2:
        draw = lambda path: save_scatter(x, path)  # noqa: E731
    else:  # a conditional model's classes in turn: one class per column
        nrow = len(class_names) if labels is not None and ns.label is None else None
        draw = lambda path: save_image_grid(x, path, nrow=nrow, scale=max(1, 64 // x.shape[-1]))  # noqa: E731
    npy = _write_samples(x, out, draw)
    print(f"wrote {out} and {npy}")


def _sample_on_path(ns: argparse.Namespace, config, model, shape, labels, class_names, out: Path, device) -> None:
    """Sample a model trained on a continuous path (:func:`~.train.path_sampling.sample_on_path`: its sampler and
    grid unless named; ``ddim`` is Euler there, DDIM being Euler in x/alpha, and on rectified flow also in t)."""
    import torch

    from .train.path_sampling import sample_on_path

    g = torch.Generator(device).manual_seed(ns.seed)
    noise = torch.randn(shape, generator=g, device=device)
    try:
        x = sample_on_path(config, model, noise, sampler=ns.sampler, steps=ns.steps, spacing=ns.spacing,
                           sigma_max=ns.sigma_max, labels=labels, guidance=ns.guidance, eta=ns.eta, generator=g,
                           progress=not ns.no_progress)
    except NonFiniteError as e:
        raise NonFiniteError(f"{e}; nothing was written (is the checkpoint from a diverged run?)") from None
    _save(x, ns, labels, class_names, out)


def _sample_distilled(ns: argparse.Namespace, config, model, grid, shape, labels, class_names, out: Path,
                      device) -> None:
    """A distilled student: DDIM on the grid it was distilled for (:func:`~.train.path_sampling.sample_on_grid`)."""
    import torch

    from .train.path_sampling import sample_on_grid

    g = torch.Generator(device).manual_seed(ns.seed)
    noise = torch.randn(shape, generator=g, device=device)
    try:
        x = sample_on_grid(config, model, noise, grid, labels=labels, guidance=ns.guidance,
                           progress=not ns.no_progress)
    except NonFiniteError as e:
        raise NonFiniteError(f"{e}; nothing was written (is the checkpoint from a diverged run?)") from None
    _save(x, ns, labels, class_names, out)
