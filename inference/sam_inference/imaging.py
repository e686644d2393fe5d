"""Image bytes → RGB array, defensively: the only place that parses client images.

Mirrors CVAT's handler (`PIL.Image.open(...).convert("RGB")`, no EXIF transpose) and rejects non-images,
truncated files, and images over the pixel limit *before* their pixels are decoded (decompression bombs).
Runs in a worker thread; no torch here.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
from sam_contract.encoding import InvalidBase64Error
from sam_contract.encoding import decode_base64 as decode_base64_text

from .errors import BadRequestError, PayloadTooLargeError


def decode_base64(text: str, field: str = "image") -> bytes:
    """The one base64 rule (``sam_contract.encoding``; the gateway's routing hash follows it too) → bytes, or a 400
    naming ``field``."""
    try:
        return decode_base64_text(text)
    except InvalidBase64Error as exc:
        raise BadRequestError(f"{field}: {exc}") from exc


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode `data` to a HxWx3 uint8 RGB array, or raise a 4xx `ServiceError`."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a global someone else may flip; truncated input must fail here
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLargeError(f"image: too many pixels ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise BadRequestError("image: not a recognised image format") from exc
        except Exception as exc:
            raise BadRequestError(f"image: cannot be opened ({exc})") from exc
        with image:
            width, height = image.size
            if width < 1 or height < 1:
                raise BadRequestError(f"image: invalid size {width}x{height}")
            if width * height > max_pixels:
                raise PayloadTooLargeError(
                    f"image: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}"
                )
            try:
                image.load()
                rgb = image.convert("RGB")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise PayloadTooLargeError(f"image: too many pixels ({exc})") from exc
            except Exception as exc:  # truncated or corrupt data, unsupported modes
                raise BadRequestError(f"image: cannot be decoded ({exc})") from exc
    return np.asarray(rgb, dtype=np.uint8)
