"""Image training data: stored rows {"image": "images/000017.png", TARGET} (the path relative to the data.jsonl's
directory; TARGET the task's "label", "labels" or "target"), decoded through `decode_image`, augmented on the training split only and normalised as the backbone was
pretrained (`Preprocessing`), so that training, evaluation and serving see the same pixels."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tuneserve.engines.imaging import Preprocessing, decode_image, normalize, preprocess, resize_shorter
from tuneserve.engines.training.data import DatasetError, read_rows, targets
from tuneserve.tasks import Task, TaskParams, get_task

# NOTE: every stored image passed the server's max_image_pixels check at upload; this bound only keeps a tampered
# dataset directory from exhausting the worker's memory.
MAX_TRAINING_PIXELS = 100_000_000
# NOTE: RandomResizedCrop's scale range; torchvision's (0.08, 1) is tuned for ImageNet-scale training from scratch and
# crops too much away for the small datasets a fine-tune gets.
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# NOTE: decoded and resized images of the split are kept in memory up to this many bytes (uint8 RGB); beyond it they
# are decoded again each epoch.
CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class ImageExample:
    image: Path
    target: Any                 # a label, a list of labels or a number (the task's target)


@dataclass(frozen=True)
class Augmentation:
    flip: bool
    random_resized_crop: bool


def read_image_examples(path: Path, task: Task | None = None) -> list[ImageExample]:
    """Rows of a stored image dataset; an image path must stay inside the dataset's directory."""
    root = path.parent.resolve()

    def example(row: dict[str, Any], target: Any) -> ImageExample:
        image = row["image"]
        resolved = (root / image).resolve()
        if not resolved.is_relative_to(root):
            raise DatasetError(f"image path {image!r} leaves the dataset")
        return ImageExample(image=resolved, target=target)

    return read_rows(path, "image", example, task or get_task(""), value='"images/NAME"')


class ImageDataset(Dataset[dict[str, Any]]):
    """{"pixel_values": float32 [3, crop, crop], "labels": the encoded target (a class index, a multi-hot row or a
    standardised value)}; with `augment`, a fresh random view per access."""

    def __init__(
        self,
        examples: list[ImageExample],
        labels: list[str],
        prep: Preprocessing,
        *,
        augment: Augmentation | None = None,
        seed: int = 0,
        task: Task | None = None,
        params: TaskParams | None = None,
    ) -> None:
        task = task or get_task("")
        self._examples = examples
        self._targets = task.encode_targets(targets(examples), labels, params or TaskParams()).tolist()
        self._prep = prep
        self._augment = augment
        self._rng = random.Random(seed)
        self._cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self._resized(i)
        pixels = preprocess(image, self._prep) if self._augment is None else self._augmented(image, self._augment)
        return {"pixel_values": torch.from_numpy(pixels), "labels": self._targets[i]}

    def row_logits(self, logits: np.ndarray) -> np.ndarray:
        """The model's outputs on these rows as the task judges a row: one row per image."""
        return logits

    def _resized(self, i: int) -> Image.Image:
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        example = self._examples[i]
        try:
            image = decode_image(example.image.read_bytes(), max_pixels=MAX_TRAINING_PIXELS)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{example.image.name}: {error}") from error
        image = resize_shorter(image, self._prep.resize)
        size = image.width * image.height * 3
        if self._cached_bytes + size <= CACHE_BYTES:
            self._cache[i] = image
            self._cached_bytes += size
        return image

    def _augmented(self, image: Image.Image, augment: Augmentation) -> np.ndarray:
        crop = self._prep.crop
        if augment.random_resized_crop:
            left, top, width, height = random_crop_box(image.width, image.height, self._rng)
            image = image.resize((crop, crop), Image.Resampling.BILINEAR, box=(left, top, left + width, top + height))
        else:
            left, top = (image.width - crop) // 2, (image.height - crop) // 2
            image = image.crop((left, top, left + crop, top + crop))
        if augment.flip and self._rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return normalize(image, self._prep)


def random_crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (left, top, w, h) for CROP_SCALE and CROP_RATIO; the centre square if ten
    tries find none."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side
