"""Credentials written inside URLs, blanked wherever aa shows or records one.

A user may put a password or a key in a URL option (``https://user:pass@proxy/v1``,
``https://host/v1?key=...``). ``config.yaml``, the trackers' hyper-parameters, the report and
error messages show such a URL with its user information and the values of its secret-named
query parameters replaced by ``***``; scheme, host, port, path and the other parameters stay, so
it still says where requests went. Stage fingerprints are taken of the blanked config too: a
config read back from ``config.yaml`` fingerprints as the one it was written from.
"""

from __future__ import annotations

import re
from typing import Any

BLANK = "***"
SECRET_PARAMETER = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential", re.IGNORECASE)
# scheme://, then user information up to the last "@" before the path (a raw "@" in a password included)
URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^/\s?#]*@)?([^\s\"'<>]*)", re.IGNORECASE)
QUERY_PAIR = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")


def blank_credentials(text: str) -> str:
    """``text`` with the user information and secret-named query values of every URL in it blanked."""

    def url(match: re.Match) -> str:
        scheme, userinfo, rest = match.groups()
        rest = QUERY_PAIR.sub(lambda q: f"{q[1]}{q[2]}={BLANK}" if SECRET_PARAMETER.search(q[2]) else q[0], rest)
        return scheme + (f"{BLANK}@" if userinfo else "") + rest

    return URL.sub(url, text)


def blanked(value: Any) -> Any:
    """A config record (nested dicts and lists) with ``blank_credentials`` applied to every string in it."""
    if isinstance(value, str):
        return blank_credentials(value)
    if isinstance(value, dict):
        return {k: blanked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [blanked(v) for v in value]
    return value
