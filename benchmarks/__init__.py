"""Speed benchmarks: `python -m benchmarks.<name>`."""
