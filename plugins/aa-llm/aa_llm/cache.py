"""Answers on disk, one JSON file per request, shared by every run on the machine.

The key is a hash of ``FORMAT`` and everything that shaped the answer (model, API base with its
credentials blanked, instruction, category, domain and its description, N, temperature, seed,
round); the entry holds the reply's text and its token counts, never a key or a header. A change
to what an entry holds or how its text is read bumps ``FORMAT``, so no older entry is misread.
Files are written whole (temporary name, then rename) so a killed run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = 2  # 2: requests carry only the parameters the provider takes; answers parsed from prose too


def key_of(inputs: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **inputs}, sort_keys=True).encode()).hexdigest()[:32]


class AnswerCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"format": FORMAT, **entry}, indent=1))
        os.replace(tmp, path)
