"""Derivations for the errata page: the correct forms of commonly mis-stated results."""
