"""Derivations for Part 2, Diffusion models."""
