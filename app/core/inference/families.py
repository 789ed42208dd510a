"""What each vision-model family needs from the engine at run time, by the mmproj's `clip.projector_type`.

- Dynamic-resolution projectors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5) give an image as many tokens as its size
  asks for; a camera frame needs no more than CAMERA_IMAGE_TOKENS (about a 512x512 view for Qwen3-VL's 32-pixel
  merged patches), so mtmd is told to cap them (`image_max_tokens`).
- Gemma 4's projector attends over the whole image at once in the text model: all of an image's tokens must be in
  one micro-batch (`n_ubatch` at least the image's token count).
- M-RoPE families (the Qwen-VL ones) advance positions by an image's grid, not its token count; the engine already
  counts positions by mtmd's `n_pos`, so nothing is needed here beyond knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass

CAMERA_IMAGE_TOKENS = 256


@dataclass(frozen=True)
class FamilyNeeds:
    image_max_tokens: int | None = None  # cap for mtmd's dynamic image-token count (None: mtmd's default)
    image_in_one_ubatch: bool = False  # n_ubatch must hold every token of one image
    mrope: bool = False  # positions follow the image grid (n_pos differs from the token count)


_DYNAMIC_MROPE = FamilyNeeds(image_max_tokens=CAMERA_IMAGE_TOKENS, mrope=True)

NEEDS: dict[str, FamilyNeeds] = {
    "qwen2vl_merger": _DYNAMIC_MROPE,
    "qwen2.5vl_merger": _DYNAMIC_MROPE,
    "qwen3vl_merger": _DYNAMIC_MROPE,
    "gemma4v": FamilyNeeds(image_max_tokens=CAMERA_IMAGE_TOKENS, image_in_one_ubatch=True),
}


def needs_for(projector_type: str | None) -> FamilyNeeds:
    return NEEDS.get(projector_type or "", FamilyNeeds())
