"""Resuming a distillation run (``distill --resume``): what must match the checkpoint's record, and the teacher.

Every distillation checkpoint records, in ``extra["distillation"]``, the run's own settings (:func:`own_settings`:
the options of :class:`~.distill_config.DistillConfig` that are not also :class:`~.config.TrainConfig`'s, such as
method, steps_from, steps_to, iters_per_round, pairs, teacher_sampler) and the SHA-256 of the teacher's file, as
given at the start. A resume refuses, in one line naming them, settings that differ from that record; the options
the run shares with ``train`` (batch size, seed, the optimizer's settings, run control) are checked by train's own
resume (:func:`~.resume.resume_changes`), which allows the optimizer's settings and run control to change, with its
notices.

The teacher's file is not read again: each checkpoint holds what the run still needs of it (progressive: the current
round's teacher weights; reflow: the pairs). A teacher file that is gone is therefore no obstacle (a notice says
so); one that is there must still be the file the run started from, else the run's record would name another model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .checkpoint import Checkpoint
from .config import TrainConfig
from .distill_config import DistillConfig

__all__ = ["file_sha256", "own_settings", "resume_identity", "start_identity"]

log = logging.getLogger("diffusion_core.train")


def _own_fields() -> list[dataclasses.Field]:
    shared = {f.name for f in dataclasses.fields(TrainConfig)} | {"checkpoint"}  # the teacher: by its SHA-256
    return [f for f in dataclasses.fields(DistillConfig) if f.name not in shared]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def own_settings(config: DistillConfig) -> dict[str, Any]:
    """The distillation's own settings, as JSON values: what a resume must keep."""
    return {f.name: _plain(getattr(config, f.name)) for f in _own_fields()}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def start_identity(config: DistillConfig) -> dict[str, Any]:
    """What a new run records of itself: the teacher (its path as given, its SHA-256) and its own settings."""
    return {"teacher": config.checkpoint, "teacher_sha256": file_sha256(config.checkpoint),
            "settings": own_settings(config)}


def resume_identity(ckpt: Checkpoint, config: DistillConfig, resume: str | Path) -> dict[str, Any]:
    """The record of the run that ``ckpt`` (the file ``resume``) continues, checked against ``config``: raises
    :class:`InvalidInput` naming the settings that differ, or a teacher file that is not the run's."""
    record = ckpt.extra.get("distillation")
    if not isinstance(record, dict):
        raise InvalidInput(f"cannot resume: checkpoint {str(resume)!r} is not a distillation run's (train --resume "
                           "continues a training run)")
    then = record.get("settings")
    if not isinstance(then, dict) or not isinstance(record.get("teacher_sha256"), str):
        raise InvalidInput(f"cannot resume: checkpoint {str(resume)!r} was written by a version that could not "
                           "resume distillations; start the run again")
    now = own_settings(config)
    defaults = {f.name: _plain(f.default) for f in _own_fields()}  # a setting newer than the run: its default
    differ = [k for k in now if then.get(k, defaults[k]) != now[k]]
    if differ:
        raise InvalidInput(f"cannot resume: the checkpoint was distilled with different {', '.join(differ)} ("
                           + ", ".join(f"{k} {then.get(k, defaults[k])!r}" for k in differ)
                           + " there; only run-control and optimizer settings may change on resume)")
    _check_teacher(config.checkpoint, record["teacher_sha256"])
    return {"teacher": record.get("teacher"), "teacher_sha256": record["teacher_sha256"], "settings": now}


def _check_teacher(path: str, sha256: str) -> None:
    if not Path(path).is_file():
        log.info("the teacher %r is not there; the resume does not need it (the checkpoint holds the round's "
                 "teacher weights, or reflow's pairs)", path)
        return
    if file_sha256(path) != sha256:
        raise InvalidInput(f"cannot resume: the teacher checkpoint {path!r} is not the file this run started from "
                           "(its SHA-256 differs from the one recorded at the start); give --checkpoint that file, "
                           "or start a new run")
