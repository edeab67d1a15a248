"""kronos-bot: a crypto paper-trading daemon built around the Kronos candlestick foundation model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kronos-bot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
