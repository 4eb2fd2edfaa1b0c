"""The checkpoints the site's example notebooks sample from, and the one place their training settings live.

A notebook asks for its model with :func:`example_checkpoint`: the file ``checkpoints/<name>/checkpoint.safetensors``
in the folder it runs in, trained first with ``diffusion-core train`` and the settings below when it is missing (a
notebook downloaded on its own). The site's build sets ``DIFFUSION_CORE_EXAMPLE_CHECKPOINTS`` to
``docs/examples/checkpoints/``: the committed checkpoints, made with these settings (the commands in that folder's
README), are used from there, and a missing one is an error rather than a training run. Each run uses the CPU when
there is no GPU and the default seed.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from .errors import InvalidInput

__all__ = ["READY", "RECIPES", "example_checkpoint", "train_arguments"]

READY = "DIFFUSION_CORE_EXAMPLE_CHECKPOINTS"  # a folder of ready checkpoints: used as they are, never trained

# `diffusion-core train` options of each example checkpoint (besides --out-dir and --no-progress).
# --precision fp32: "auto" means bf16 on CPUs with native bf16, and these runs must be the same on every CPU.
RECIPES = {
    # the swiss-roll quality test's settings (tests/test_quality.py)
    "swiss-roll": "--dataset swiss-roll --model mlp --steps 3000 --batch-size 256 --lr 1e-3 --warmup-steps 100 "
                  "--precision fp32",
    # the defaults: the digits-8 U-Net, 1,000 steps at batch 128, v-prediction, the cosine schedule
    "digits": "--log-every 100 --precision fp32",
    # the defaults, class-conditional with the null label a tenth of the time (classifier-free guidance)
    "digits-cond": "--class-cond --p-uncond 0.1 --log-every 100 --precision fp32",
}


def train_arguments(name: str, out_dir: str | Path) -> list[str]:
    """The ``diffusion-core`` arguments that train the example checkpoint ``name`` into ``out_dir``."""
    if name not in RECIPES:
        raise InvalidInput(f"no example checkpoint {name!r}; the examples use {', '.join(sorted(RECIPES))}")
    return ["train", *shlex.split(RECIPES[name]), "--no-progress", "--out-dir", str(out_dir)]


def example_checkpoint(name: str, folder: str | Path = "checkpoints") -> Path:
    """``<folder>/<name>/checkpoint.safetensors``, trained first (with :data:`RECIPES`) when it is missing.

    Where the environment variable :data:`READY` names a folder, the checkpoint is taken from there instead and is
    never trained.

    Raises:
        InvalidInput: ``name`` is not an example checkpoint, or it is missing from the :data:`READY` folder.
        RuntimeError: the training run failed (``diffusion-core train`` printed why).
    """
    ready = os.environ.get(READY)
    out_dir = Path(ready or folder) / name
    path = out_dir / "checkpoint.safetensors"
    argv = train_arguments(name, out_dir)
    if path.is_file():
        return path
    if ready:
        raise InvalidInput(f"{path} is missing, and {READY} names a folder of ready checkpoints, which are not "
                           f"trained here; make it with: diffusion-core {shlex.join(argv)}")
    from .cli import main

    print(f"{path} is missing; training it: diffusion-core {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code != 0 or not path.is_file():
        raise RuntimeError(f"training the example checkpoint {name!r} failed (diffusion-core exited with {code})")
    return path
