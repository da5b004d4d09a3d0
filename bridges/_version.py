"""The package version, read by pyproject.toml and `bridge --version`."""

__version__ = "0.1.0"
"""The version of bridges (PEP 440), as `bridge --version` prints it."""
