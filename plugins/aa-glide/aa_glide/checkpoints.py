"""Where GLIDE's weights come from, and how they are read without running anything in them.

Either the released checkpoints, downloaded once into the machine's cache through
``download.fetch_verified`` (whole, checked against ``RELEASED``, or not kept at all), or a local
folder with ``base.pt`` (and ``upsample.pt``) and optional ``base.json`` / ``upsample.json`` of
options over GLIDE's ``model_and_diffusion_defaults``. Both are read by ``torch.load`` with
``weights_only=True``: a pickle that names anything but tensors and plain containers (a class, a
function to call) is refused before it is built, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

from aa_core.api import AAError
from aa_glide.download import fetch_verified, is_intact

logger = logging.getLogger("aa")

URL = "https://openaipublic.blob.core.windows.net/diffusion/dec-2021"  # glide_text2im.download.MODEL_PATHS


@dataclass(frozen=True)
class Released:
    url: str
    sha256: str | None  # None: not pinned (see RELEASED)
    size: int | None  # bytes; None: not pinned


# The released checkpoints. OpenAI publishes no checksums for them (glide-text2im downloads without
# checking), and no SHA-256 of either file could be found in a public source when this table was
# written, so both sums are None rather than guessed. Without a sum a download is still refused
# unless it is complete (an HTTP success, every byte the server announced, the pinned size where
# known) and it is read with weights-only unpickling, which runs no code; the sum it had is logged.
# Pin a sum here once it is known from a trusted copy (`sha256sum base.pt`): every download and
# every cached copy is then checked against it.
RELEASED = {
    "base": Released(f"{URL}/base.pt", sha256=None, size=None),
    "upsample": Released(f"{URL}/upsample.pt", sha256=None, size=None),
}

DOWNLOAD_FIX = "retry, or download it by hand into a folder and set generator.model to that folder"


def load_tensors(path: Path, fix: str) -> dict:
    """The state dict in ``path``, read with weights-only unpickling; a one-line error for anything else."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
        raise AAError(f"{path} is not a checkpoint of tensors alone, and weights-only loading refused it ({refusal(exc)}); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AAError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; {fix}")
    return state


def refusal(exc: Exception) -> str:
    """What torch refused, in a few words: its message first advises loading unsafely, then names the
    global or opcode it met ("Unsupported global: GLOBAL io.open ...", "Unsupported operand 60")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch emboldens part of it for terminals
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "nsupported" in line:
            return f"{type(exc).__name__}: {line.split('error:', 1)[-1].strip().split('. Please')[0].rstrip('.')}"
    said = [line for line in lines if not line.startswith("Weights only load failed")]
    return f"{type(exc).__name__}: {said[0].rstrip('.')}" if said else type(exc).__name__


class Checkpoints:
    """GLIDE's weights: the released ones (downloaded once, checked), or a local folder's."""

    def __init__(self, folder: str | None, cache_dir: Path | None):
        self.folder = Path(folder).expanduser() if folder else None
        self.cache_dir = cache_dir
        if self.folder is not None and not (self.folder / "base.pt").is_file():
            raise AAError(f"generator.model {self.folder} holds no base.pt; point it at a folder with GLIDE's base.pt "
                          "(and upsample.pt), or leave it empty for the released checkpoints")  # fmt: skip

    def path(self, name: str) -> Path:
        if self.folder is not None:
            path = self.folder / f"{name}.pt"
            if not path.is_file():
                raise AAError(f"generator.model {self.folder} holds no {name}.pt; add it, or set generator.upsample=false")
            return path
        return self.released(name)

    def released(self, name: str) -> Path:
        """The released ``<name>.pt`` in the cache, downloaded (and checked) when it is missing or not the pinned file."""
        pin = RELEASED[name]
        if self.cache_dir is not None:
            folder = self.cache_dir
        else:
            from glide_text2im.download import default_cache_dir

            folder = Path(default_cache_dir())
        path = folder / f"{name}.pt"
        if is_intact(path, pin.sha256, pin.size):  # hashes the cached copy when a sum is pinned: seconds, against minutes of sampling
            return path
        got = fetch_verified(pin.url, path, pin.sha256, pin.size, fix=DOWNLOAD_FIX, progress=True)
        if pin.sha256 is None:
            logger.warning("GLIDE's %s.pt has no pinned SHA-256; the downloaded file's is %s (compare it with a trusted copy)", name, got)
        return path

    def options(self, name: str, defaults: dict) -> dict:
        """GLIDE's defaults for this model, with the folder's ``<name>.json`` over them."""
        extra = self.folder / f"{name}.json" if self.folder is not None else None
        return {**defaults, **(json.loads(extra.read_text()) if extra and extra.is_file() else {})}

    def state(self, name: str) -> dict:
        """``<name>.pt``'s tensors, read before any model is built: a refused file costs no time."""
        path = self.path(name)
        fix = (f"save the model's state_dict() alone as {name}.pt" if self.folder is not None
               else "delete it, and it is downloaded again")  # fmt: skip
        return load_tensors(path, fix)

    def load(self, name: str, defaults: dict, respacing: str, fp16: bool, device):
        from glide_text2im.model_creation import create_model_and_diffusion

        state = self.state(name)
        options = {**self.options(name, defaults), "timestep_respacing": respacing, "use_fp16": fp16}
        try:
            model, diffusion = create_model_and_diffusion(**options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise AAError(f"GLIDE's {name} options are not valid ({exc}); fix {name}.json in generator.model") from None
        model.eval()
        if fp16:
            model.convert_to_fp16()
        model.to(device)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise AAError(f"{name}.pt does not fit GLIDE's {name} model ({first}); give its options in {name}.json") from None
        return model, diffusion, options
