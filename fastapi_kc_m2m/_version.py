"""The installed distribution's version (PEP 440), read from its metadata."""

from importlib.metadata import version

__version__ = version("fastapi_kc_m2m")
