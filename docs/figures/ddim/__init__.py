"""Figures for Part 3, DDIM."""
