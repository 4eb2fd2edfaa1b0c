r"""What a sampler's step reads from its time grid: the grid's times, :math:`\alpha, \sigma` (float64, and in the
state's dtype on its device), the path's derivatives and the network's time input at grid position ``k``, and
the sampler's own per-step tables.

The grid's tables are looked up (and the grid validated) once per path and grid, not once per call: a sampler
called again with the same grid (every batch of a sampling run, a benchmark's rounds) reuses them.

A step gets its position ``k`` from the loop (:func:`~diffusion_core.sampling.run`) as a ``(1,)`` LongTensor, so
that a compiled step is one graph for every position: there, every read is ``index_select`` by ``k``. Run
eagerly, ``k`` is one of the loop's own position tensors (:func:`~diffusion_core.sampling.step_index`), and a read
is a view of the table cut before the loop: no indexing, reshaping or broadcasting op per read. With a small
network those ops were most of what a step costs besides the network (the Benchmarks page's loop time per call).
Either way a read gives the same values; only what it costs differs.
"""
from __future__ import annotations

import weakref
from typing import NamedTuple

import torch

from .denoiser import BaseDenoiser
from .errors import InvalidInput, InvalidInputType
from .paths import DiscreteVP
from .sampling import check_start, position, step_index
from .targets import Coefficients

__all__ = ["StepGrid"]

# Per path (weakly held), the last few grids' tables; per grid, the per-row views of the last few batch shapes.
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TABLES_PER_PATH = 8
_SHAPES_PER_GRID = 4


class _Tables(NamedTuple):
    steps: int  # the grid's times less one
    alpha64: torch.Tensor  # float64, CPU
    sigma64: torch.Tensor
    ts: torch.Tensor  # float64, on the state's device
    alpha: torch.Tensor  # the state's dtype and device
    sigma: torch.Tensor
    derivatives: tuple[torch.Tensor, torch.Tensor] | None  # continuous paths: d alpha/dt, d sigma/dt
    network_time: torch.Tensor  # the network's time input, on the state's device
    rows: dict  # (batch, ndim) -> _Rows
    columns: dict  # (table name, ndim) -> alpha's or sigma's per-position views shaped (1, 1, ...)


class _Rows(NamedTuple):
    """Per grid position, the reads of a batch: times and network times ``(B,)``, coefficients ``(B, 1, ...)``."""

    times: tuple[torch.Tensor, ...]
    coefficients: tuple[Coefficients, ...]
    network_times: tuple[torch.Tensor, ...]


def _grid_tables(path, ts, device: torch.device, dtype: torch.dtype) -> _Tables:
    """The tables of the grid ``ts``, checked, made once per path, grid values, device and dtype: a grid seen before
    is found by its values, with no conversion or check repeated."""
    cached = _TABLES.setdefault(path, {})
    if not isinstance(ts, torch.Tensor):  # a list of times
        ts = torch.as_tensor(ts, dtype=torch.float64)
    key = (tuple(ts.tolist()), device, dtype) if ts.ndim == 1 else None  # equal values convert to equal tables
    tables = cached.get(key)
    if tables is not None:
        return tables
    ts = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
    if ts.ndim != 1 or ts.numel() < 2 or ts[-1] != 0 or not bool((ts[1:] < ts[:-1]).all()):
        raise InvalidInput("ts must be a decreasing 1-D grid of at least 2 times ending at 0 (time_grid makes one), "
                           f"got shape {tuple(ts.shape)}: {ts.reshape(-1).tolist()[:8]}{'...' if ts.numel() > 8 else ''}")
    alpha64, sigma64 = path.alpha(ts), path.sigma(ts)
    derivatives = None if isinstance(path, DiscreteVP) else tuple(
        v.to(device=device, dtype=dtype) for v in path.derivatives(ts))
    tables = _Tables(ts.numel() - 1, alpha64, sigma64, ts.to(device), alpha64.to(device=device, dtype=dtype),
                     sigma64.to(device=device, dtype=dtype), derivatives, path.network_time(ts).to(device), {}, {})
    if len(cached) >= _TABLES_PER_PATH:
        cached.pop(next(iter(cached)))
    cached[key] = tables
    return tables


def _rows_of(tables: _Tables, batch: int, ndim: int) -> _Rows:
    """The per-position reads for a batch of ``batch`` states of ``ndim`` dimensions, made once per grid and shape."""
    rows = tables.rows.get((batch, ndim))
    if rows is None:
        ones = [1] * (ndim - 1)

        def per_row(table, *shape):
            return table.reshape(-1, 1, *shape).expand(-1, batch, *shape).unbind(0)

        alpha, sigma, *derivatives = (None if v is None else per_row(v, *ones) for v in
                                      (tables.alpha, tables.sigma, *(tables.derivatives or (None, None))))
        coefficients = tuple(Coefficients(*(None if v is None else v[i] for v in (alpha, sigma, *derivatives)))
                             for i in range(len(alpha)))
        rows = _Rows(per_row(tables.ts), coefficients, per_row(tables.network_time))
        if len(tables.rows) >= _SHAPES_PER_GRID:
            tables.rows.pop(next(iter(tables.rows)))
        tables.rows[(batch, ndim)] = rows
    return rows


class StepGrid:
    """The grid ``ts`` of a sampler called on the denoiser ``denoiser`` from the state ``x``: its tables (float64
    ``alpha64``, ``sigma64`` on the CPU; ``ts``, ``alpha``, ``sigma``, ``derivatives``, ``network_time`` on the
    state's device), and the per-step reads (see the module's docstring)."""

    def __init__(self, denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor) -> None:
        if not isinstance(denoiser, BaseDenoiser):
            raise InvalidInputType(f"denoiser must be a Denoiser (or a guided one), got {type(denoiser).__name__}; "
                                   "wrap a network: Denoiser(network, path, target)")
        check_start(x)
        path = denoiser.path
        if path is None:
            raise InvalidInput("the denoiser has no path: build it with Denoiser(network, path, target)")
        self.batch, self.ndim = x.shape[0], x.ndim
        self._tables = _grid_tables(path, ts, x.device, x.dtype)
        (self.steps, self.alpha64, self.sigma64, self.ts, self.alpha, self.sigma, self.derivatives,
         self.network_time, _, _) = self._tables
        self._rows: _Rows | None = None
        self._views: dict[int, tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = {}

    def _eager(self, k: torch.Tensor) -> int | None:
        """``k``'s position when it is one of the loop's position tensors and the step runs eagerly, else None."""
        return None if torch.compiler.is_compiling() else position(k)

    def _batch_rows(self) -> _Rows:
        if self._rows is None:
            self._rows = _rows_of(self._tables, self.batch, self.ndim)
        return self._rows

    def after(self, k: torch.Tensor) -> torch.Tensor:
        """The grid position after ``k``."""
        i = self._eager(k)
        return k + 1 if i is None else step_index(i + 1, k.device)

    def col(self, table: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``table[k]`` shaped ``(1, 1, ...)`` to broadcast against the state."""
        i = self._eager(k)
        if i is None:
            return table.index_select(0, k).reshape(-1, *([1] * (self.ndim - 1)))
        cut = self._views.get(id(table))
        if cut is None:  # the table is kept beside its views, so that its id stays its own
            cut = self._views[id(table)] = (table, self._cut(table))
        return cut[1][i]

    def _cut(self, table: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-position views of ``table`` shaped ``(1, 1, ...)``; the grid's own alpha and sigma once per grid."""
        name = "alpha" if table is self.alpha else "sigma" if table is self.sigma else None
        views = self._tables.columns.get((name, self.ndim)) if name else None
        if views is None:
            views = table.reshape(-1, 1, *([1] * (self.ndim - 1))).unbind(0)
            if name:
                self._tables.columns[(name, self.ndim)] = views
        return views

    def time(self, k: torch.Tensor) -> torch.Tensor:
        """The grid time at ``k`` for every row, ``(B,)``."""
        i = self._eager(k)
        return self.ts.index_select(0, k).expand(self.batch) if i is None else self._batch_rows().times[i]

    def network_input_time(self, k: torch.Tensor) -> torch.Tensor:
        """The network's time input at ``k`` for every row, ``(B,)``."""
        i = self._eager(k)
        if i is None:
            return self.network_time.index_select(0, k).expand(self.batch)
        return self._batch_rows().network_times[i]

    def coefficients(self, k: torch.Tensor) -> Coefficients:
        """The path's coefficients at grid time ``k`` per row, as ``BaseDenoiser.coefficients`` gives them."""
        i = self._eager(k)
        if i is not None:
            return self._batch_rows().coefficients[i]

        def rows(table):
            return None if table is None else table.index_select(0, k).expand(self.batch).reshape(
                -1, *([1] * (self.ndim - 1)))
        return Coefficients(rows(self.alpha), rows(self.sigma), *map(rows, self.derivatives or (None, None)))

    def table(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A float64 per-step table on the state's device and dtype."""
        return values.to(device=like.device, dtype=like.dtype)
