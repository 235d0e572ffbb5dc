"""xafm benchmarks: scripts, not tests. Run ``python -m bench`` from the project root."""
