"""The errors a user causes, kept apart from the errors our own code has.

Every argument check in the library raises :class:`InvalidInput` (a ``ValueError``) or
:class:`InvalidInputType` (also a ``TypeError``), with a message naming the argument and what is allowed.
The command line prints exactly these, and the file-system errors a user's paths cause, as one line;
anything else is a bug in diffusion_core and keeps its traceback.
"""
from __future__ import annotations

__all__ = ["InvalidInput", "InvalidInputType", "NonFiniteError"]


class InvalidInput(ValueError):
    """A value the caller passed (an argument, a config field, a file's contents) is not allowed."""


class InvalidInputType(InvalidInput, TypeError):
    """An argument has the wrong type; still a ``TypeError`` for callers that catch that."""


class NonFiniteError(FloatingPointError):
    """A value that must be finite (a loss, a weight, a sample) holds NaN or Inf; the message says which."""
