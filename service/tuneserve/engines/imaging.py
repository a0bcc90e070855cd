"""Images: decode uploaded bytes safely (Pillow), the one place every image enters the service, and the
deterministic preprocessing (resize, centre crop, normalise) shared by training evaluation and serving.

Upload validation, training, Evaluate and Predict all decode through `decode_image`, so a file accepted at upload is
an image every later step can read, and the same limits hold everywhere.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
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


# NOTE: EfficientNet-Lite was trained in TensorFlow with MEAN_RGB = [127.0] * 3 and STDDEV_RGB = [128.0] * 3
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py), i.e. pixels mapped to about
# [-1, 1], not the torchvision ImageNet mean/std; efficientnet-lite-pytorch converts those TF weights unchanged.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# NOTE: the evaluation crop keeps the centre 224/256 of the shorter side, TF EfficientNet's crop at Lite0's
# resolution (TF pads every size by 32 px: 240/272 and 260/292 for Lite1/2, within 1% of this). A fixed ratio keeps
# small custom input sizes from losing a third of the image (64 px + 32 would keep only 2/3).
CROP_FRACTION = 224 / 256


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic image -> model input: resize the shorter side to `resize`, centre-crop `crop` x `crop`, scale
    to [0, 1] and normalise per channel with `mean`/`std`. Training augmentation ends in the same normalisation."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = LITE_MEAN
    std: tuple[float, float, float] = LITE_STD

    @classmethod
    def for_input_size(cls, size: int) -> Preprocessing:
        return cls(resize=round(size / CROP_FRACTION), crop=size)

    def to_json(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"preprocessing mean/std must be 3 values each (std > 0), got {mean} / {std}")
        resize, crop = int(data["resize"]), int(data["crop"])
        if not 0 < crop <= resize:
            raise ValueError(f"preprocessing needs 0 < crop <= resize, got crop {crop}, resize {resize}")
        return cls(resize=resize, crop=crop, mean=mean, std=std)


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image if target == image.size else image.resize(target, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def normalize(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """An RGB image -> float32 [3, H, W] normalised with prep's mean and std."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    mean, std = np.asarray(prep.mean, dtype=np.float32), np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def preprocess(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """The evaluation/serving transform: float32 [3, crop, crop]."""
    return normalize(center_crop(resize_shorter(image, prep.resize), prep.crop), prep)
