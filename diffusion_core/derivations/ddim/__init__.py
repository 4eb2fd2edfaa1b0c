"""Derivations for Part 3, DDIM."""
