"""Benchmarks: `./dev bench` (or `python -m bench [--quick]`). They print figures; they assert
nothing. Each compares against a baseline measured in the same run."""
