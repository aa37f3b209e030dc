"""The package version (its own module: the file writers record it without importing nbconv)."""

__version__ = "0.1.0"
