"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class AAError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""

    exit_code = 1


class ConfigError(AAError):
    """The configuration is invalid (exit status 2, like a usage error)."""

    exit_code = 2
