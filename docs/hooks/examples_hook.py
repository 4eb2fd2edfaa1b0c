"""MkDocs hook: the example notebooks sample from the committed checkpoints and never train.

mkdocs-jupyter runs each notebook in the folder ``mkdocs`` runs in, not beside the notebook, so the notebooks'
``example_checkpoint(name)`` (``diffusion_core/examples.py``) would not find ``checkpoints/`` and would train.
The kernels inherit this process's environment: ``DIFFUSION_CORE_EXAMPLE_CHECKPOINTS`` points them at
``docs/examples/checkpoints/``, and a checkpoint missing from there stops the build instead of training.
"""
from __future__ import annotations

import os
from pathlib import Path


def on_config(config):
    from diffusion_core.examples import READY

    os.environ[READY] = str(Path(config.docs_dir).resolve() / "examples" / "checkpoints")
    return config
