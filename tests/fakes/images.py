"""Small real images for fakes to return."""

from __future__ import annotations

import hashlib

import pyvips


def png_for(prompt: str, width: int = 64, height: int = 48) -> bytes:
    """A deterministic two-colour PNG derived from the prompt (real bytes, so imaging runs)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    image = (pyvips.Image.black(width, height, bands=3).copy(interpretation="srgb") + list(digest[:3])).cast("uchar")
    image = image.draw_rect(list(digest[3:6]), width // 2, 0, width - width // 2, height, fill=True)
    return image.pngsave_buffer(compression=1)
