"""Derivations behind the formulas in the library's docstrings (docs/api.md)."""
