"""Figures for Part 5 (flow matching, EDM)."""
