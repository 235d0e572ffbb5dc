"""``python -m bench``: the foundation benchmark (writers/readers vs raw calls, streaming RSS)."""

from bench.io_bundles import main

main()
