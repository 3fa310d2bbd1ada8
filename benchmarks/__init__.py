"""Speed and scale benchmarks, compared with the reference libraries (run as modules)."""
