"""An image filter that drops a fixed share of images, chosen by a hash of their pixels: it
exercises every path of a dropped image (set aside, listed, made again) in a few milliseconds."""

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from aa_core.api import ImageFilter


class CoinOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    share: float = Field(0.5, ge=0, le=1, description="share of images dropped")


def coin(image) -> float:
    """A number in [0, 1) that depends on the image's pixels alone."""
    return int(hashlib.sha256(image.tobytes()).hexdigest()[:8], 16) / 2**32


class CoinFilter(ImageFilter):
    Options = CoinOptions

    def reasons(self, images, prompts, labels):
        return [f"coin {coin(image):.3f} < {self.options.share}" if coin(image) < self.options.share else None for image in images]
