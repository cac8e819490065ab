"""Keys live in the environment (litellm's usual variables) and nowhere else.

``redact`` blanks every value of an environment variable whose name says it holds a secret, and
the password or key written inside any URL (``https://user:pass@host``, ``?key=...``), so a
provider's error message that echoes a key or the API base never reaches a log or the terminal.
"""

from __future__ import annotations

import os
import re

from aa_core.api import blank_credentials

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def secrets() -> list[str]:
    values = [v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6]
    return sorted(values, key=len, reverse=True)  # a key that contains another goes first


def redact(text: str) -> str:
    text = blank_credentials(text)
    for value in secrets():
        text = text.replace(value, "***")
    return re.sub(r"\b(sk|key|token)-[A-Za-z0-9_\-]{8,}", r"\1-***", text)  # key-shaped strings of other origins
