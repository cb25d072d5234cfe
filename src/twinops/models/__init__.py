"""Models that ship with twinops (from PyPI packages) and the resolution of model ids/paths."""
