"""Figures for Part 1, background."""
