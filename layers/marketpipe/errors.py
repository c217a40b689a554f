"""Errors a user can act on: the CLI prints their message as one line and exits non-zero."""


class MarketpipeError(Exception):
    """Base for errors that are reported to the user without a traceback."""


class ConfigError(MarketpipeError):
    """Invalid configuration: unknown exchange or symbol, malformed value, unreachable store."""
