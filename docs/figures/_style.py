"""Shared look of the site's figures: sizes, colours, and a chain-diagram helper."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402

INDIGO, ORANGE, GREEN, GREY = "#3f51b5", "#e65100", "#2e7d32", "#757575"
WIDE = (7.2, 3.0)


def axes(n: int = 1, size=WIDE, **kw):
    fig, ax = plt.subplots(1, n, figsize=size, constrained_layout=True, **kw)
    for a in ([ax] if n == 1 else ax):
        a.spines[["top", "right"]].set_visible(False)
    return fig, ax


def node(ax, x, y, text, *, shaded=False, r=0.32):
    ax.add_patch(Circle((x, y), r, facecolor="#e8eaf6" if shaded else "white", edgecolor="black", lw=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=12)


def arrow(ax, start, end, *, colour="black", rad=0.0, label=None, label_at=None, style="-|>"):
    """An arrow between two node centres, stopping 16 points short of each (the node's edge)."""
    (x0, y0), (x1, y1) = start, end
    a = FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=14, color=colour, lw=1.4,
                        connectionstyle=f"arc3,rad={rad}", shrinkA=16, shrinkB=16)
    ax.add_patch(a)
    if label:
        lx, ly = label_at if label_at else ((x0 + x1) / 2, (y0 + y1) / 2)
        ax.text(lx, ly, label, ha="center", va="center", fontsize=10, color=colour)

