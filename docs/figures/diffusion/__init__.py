"""Figures for Part 2, diffusion models."""
