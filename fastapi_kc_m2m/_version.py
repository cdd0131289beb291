"""The one version (PEP 440): setuptools reads it into the distribution's metadata (pyproject's dynamic version)."""

__version__ = "0.1.0"
