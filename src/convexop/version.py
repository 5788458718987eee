"""The package version, in one place (pyproject reads it; files record it)."""

__version__ = "0.1.0"
