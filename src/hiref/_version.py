"""The installed version of hiref (a leaf module: subpackages read it from here, not from the package root)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hiref")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
