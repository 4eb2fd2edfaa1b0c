"""Progress bars: tqdm's, chosen for a terminal or a notebook, imported only when a bar is shown.

``tqdm.auto`` picks its notebook widget inside Jupyter, and when ipywidgets is missing it warns ("IProgress not
found") as it is imported. Imported at the top of our modules, that warning came with ``import diffusion_core``
itself; here tqdm is imported at the first bar, without that warning (tqdm then draws its text bar).
"""
from __future__ import annotations

import warnings

__all__ = ["progress_bar", "tqdm_class"]


def tqdm_class():
    """``tqdm.auto.tqdm``, imported without tqdm's notebook warnings."""
    from tqdm.std import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm


def progress_bar(iterable, *, disable: bool = False, **kwargs):
    """``iterable`` with a tqdm bar (``kwargs`` as tqdm's), or ``iterable`` itself when ``disable``."""
    if disable:
        return iterable
    return tqdm_class()(iterable, **kwargs)
