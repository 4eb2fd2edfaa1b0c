"""Figures for Part 5, measuring models: sample quality and likelihood."""
