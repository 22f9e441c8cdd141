"""Side-by-side measurements. Each module runs as `python -m benchmarks.NAME [--quick] [--json PATH]`."""
