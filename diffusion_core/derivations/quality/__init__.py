"""Derivations of Part 5's evaluation page (docs/quality/evaluation.md)."""
