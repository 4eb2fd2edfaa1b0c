"""Derivations for Part 1, Background."""
