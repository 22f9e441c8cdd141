"""The version outrider reports in build_info, metadata and logs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("outrider")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
