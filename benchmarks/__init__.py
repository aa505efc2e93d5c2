"""Tools on top of the hgzoo library, run from the repository root and not installed with the package:
``harness/`` (latency across backends, accuracy drift of the exported formats) and the scripts beside it."""
