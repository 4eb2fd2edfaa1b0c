"""MkDocs hook: the footer names the library version the site documents and when it was built.

The version is ``diffusion_core.__version__`` (the package the pages execute); the time is the build's,
in UTC, or ``SOURCE_DATE_EPOCH`` when that is set (reproducible builds).
"""
from __future__ import annotations

import datetime
import os


def build_time() -> datetime.datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return datetime.datetime.now(tz=datetime.timezone.utc)


def on_config(config):
    import diffusion_core

    stamp = build_time().strftime("%Y-%m-%d %H:%M UTC")
    config["copyright"] = (f"diffusion_core {diffusion_core.__version__} · site built {stamp} · "
                           "every derivation checked by SymPy at build time")
    return config
