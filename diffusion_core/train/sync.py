"""The trainer's named host-sync points: see :mod:`diffusion_core._sync` (the samplers' end-of-run check uses
them too, so they live at the top of the package)."""
from .._sync import host_sync_point, in_host_sync_point

__all__ = ["host_sync_point", "in_host_sync_point"]
