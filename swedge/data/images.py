"""Image files in, 8-bit RGB out, or a DataError naming the file (torch-free: training, eval, the export's
calibration and probe sets all read images through here).

Refused: unreadable or truncated files, decompression-bomb-sized images (more pixels than PIL's
``MAX_IMAGE_PIXELS``: PIL only warns up to twice that and then decodes it), float images. 16-bit grey images
(PNG mode ``I;16``, or ``I`` holding 16-bit values) are scaled to 8 bits: ``convert("RGB")`` clips them, so
nearly every pixel would become white.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
UINT16_TO_UINT8 = 257  # 65535 / 255: maps the 16-bit range onto the 8-bit one exactly


def read_rgb(path) -> Image.Image:
    """Open an image file as 8-bit RGB, or raise a DataError naming the file and the fix."""
    from swedge.errors import DataError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, never decode a bomb
        try:
            with Image.open(path) as im:
                return to_rgb(im, str(path))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"image {path} is too large to decode safely ({exc}): shrink or remove it") from None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {path} ({exc}): re-create or remove the file") from None


def to_rgb(im: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB from any PIL mode; 16-bit grey is scaled (not clipped), float images are refused."""
    from swedge.errors import DataError

    if im.mode in SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > np.iinfo(np.uint16).max):
            raise DataError(f"image {name} is a 32-bit integer image with values outside 0..65535: save it as an "
                            "8- or 16-bit image")
        im = Image.fromarray(np.round(a / UINT16_TO_UINT8).astype(np.uint8))  # mode L
    elif im.mode == "F":
        raise DataError(f"image {name} holds floating-point pixels (mode F), whose range is unknown: save it as "
                        "an 8- or 16-bit image")
    return im.convert("RGB")  # a copy even when already RGB: the pixels are loaded while the file is open
