"""Images: decode uploaded bytes safely (Pillow), the one place every image enters the service.

Upload validation, training, Evaluate and Predict all decode through `decode_image`, so a file accepted at upload is
an image every later step can read, and the same limits hold everywhere.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

# NOTE: the formats a caller may send; Pillow can read more (PSD, TIFF with odd codecs, EPS through Ghostscript), but
# every extra decoder is attack surface on untrusted bytes.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


class ImageError(ValueError):
    """The bytes are not an image this service accepts; the message says why (format, size, corruption)."""


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode JPEG/PNG/WEBP/BMP bytes into an RGB image, refusing anything above max_pixels before decoding it."""
    if not data:
        raise ImageError("empty image (0 bytes)")
    try:
        with warnings.catch_warnings():
            # NOTE: Pillow warns (and past twice its limit raises) on large images; our own limit comes first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} = {width * height} pixels, more than {max_pixels} (limit max_image_pixels)"
                )
            if width == 0 or height == 0:
                raise ImageError(f"image has no pixels ({width}x{height})")
            image.load()
            return image.convert("RGB")
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not a supported image (accepted formats: {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image is larger than {max_pixels} pixels (limit max_image_pixels)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # NOTE: Pillow reports truncated or corrupt data as OSError ("image file is truncated"), SyntaxError (broken
        # PNG chunks) or ValueError, depending on the decoder.
        raise ImageError(f"corrupt or truncated image ({exc})") from None
