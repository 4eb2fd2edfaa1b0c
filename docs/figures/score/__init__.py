"""Figures for Part 4."""
