"""Derivations for Part 4, scores, ODEs and guidance."""
