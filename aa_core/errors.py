"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class AAError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""

    exit_code = 1


class ConfigError(AAError):
    """The configuration is invalid (exit status 2, like a usage error)."""

    exit_code = 2


# errno values of a full disk, an exceeded quota and a file past the size limit (RLIMIT_FSIZE)
_NO_SPACE = {28, 122, 27}  # ENOSPC, EDQUOT, EFBIG (Linux numbering)


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write that found no room: a full disk or quota.

    torch and safetensors report it as their own errors without an errno; their messages say it.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE:
            return True
        text = str(seen)
        if "No space left on device" in text or "File too large" in text or "file write failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
