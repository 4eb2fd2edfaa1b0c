"""Figures drawn at build time: one module per page, one decorated function per figure.

A page embeds a figure with a line of its own::

    {{ figure("diffusion.forward:marginals") }}

which names the function ``marginals`` in ``docs/figures/diffusion/forward.py``.
The function takes no arguments and returns a matplotlib ``Figure``; the build
hook (``docs/hooks/figure_hook.py``) saves it as a PNG into the site under
``assets/figures/`` and writes the image with its alt text and caption.  Nothing
is stored in git: every figure is drawn from code on every build, and a figure
that raises stops the build.
"""
from __future__ import annotations

import importlib
import io
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["FigureSpec", "discover", "figure", "resolve"]

DPI = 144


@dataclass(frozen=True)
class FigureSpec:
    ref: str                 # "part.page:function"
    function: Callable
    alt: str
    caption: str

    @property
    def site_path(self) -> str:
        module, name = self.ref.split(":")
        return "assets/figures/" + module.replace(".", "/") + f"/{name}.png"

    def png(self) -> bytes:
        """Draw the figure and return the PNG's bytes (the figure is closed afterwards)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with matplotlib.rc_context({"svg.hashsalt": "diffusion-core", "figure.dpi": DPI}):
            fig = self.function()
            if not hasattr(fig, "savefig"):
                raise TypeError(f"figure {self.ref} returned {type(fig).__name__}, not a matplotlib Figure")
            buffer = io.BytesIO()
            try:
                fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight",
                            metadata={"Software": None})
            finally:
                plt.close(fig)
        return buffer.getvalue()


def figure(*, alt: str, caption: str):
    """Mark a function as a site figure; ``alt`` is read to screen readers, ``caption`` says what to look at."""
    if not alt.strip() or not caption.strip():
        raise ValueError("figure: alt and caption must both be non-empty")

    def mark(function):
        function.__figure__ = (alt.strip(), caption.strip())
        return function

    return mark


def _modules():
    root = Path(__file__).parent
    for part in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")
                       and (p / "__init__.py").is_file()):
        for info in pkgutil.iter_modules([str(part)]):
            if not info.name.startswith("_"):
                yield f"{part.name}.{info.name}"


def discover() -> dict[str, FigureSpec]:
    """Every decorated figure function, by reference ``"part.page:function"``."""
    found = {}
    for name in _modules():
        module = importlib.import_module(f"figures.{name}")
        for attr, value in vars(module).items():
            mark = getattr(value, "__figure__", None)
            if mark is not None and getattr(value, "__module__", None) == module.__name__:
                found[f"{name}:{attr}"] = FigureSpec(f"{name}:{attr}", value, *mark)
    return found


def resolve(ref: str) -> FigureSpec:
    found = discover()
    if ref not in found:
        raise LookupError(f"no figure {ref!r}; known: {', '.join(sorted(found)) or 'none'}")
    return found[ref]
