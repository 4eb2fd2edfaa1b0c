"""pytest-benchmark suite for diffusion_core (run with ``pytest benchmarks``; see benchmarks/README.md)."""
