"""Learnable synthetic rows of every task in the stored `data.jsonl` format (CONTRACT: multi-label {"text", "labels"},
regression {"text", "target"}, pairs with "text_pair"), built from `tests.fixtures`' keyword vocabulary, and image
rows of the image tasks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.fixtures import FILLER, KEYWORDS, make_image

TAGS = ["business", "sport", "tech"]


def _sentence(rng: random.Random, labels: list[str], keywords: int = 2) -> str:
    words = [word for label in labels for word in rng.sample(KEYWORDS[label], k=keywords)]
    words += rng.choices(FILLER, k=rng.randint(2, 5))
    rng.shuffle(words)
    return " ".join(words)


def multi_label_rows(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Rows carrying 0-2 of TAGS, each tag's keywords in the text (a tenth carry none)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        labels = [] if i % 10 == 0 else sorted(rng.sample(TAGS, k=1 + (i % 3 == 0)))
        rows.append({"text": _sentence(rng, labels) if labels else " ".join(rng.choices(FILLER, k=5)), "labels": labels})
    return rows


def regression_rows(count: int, *, seed: int = 0, scale: float = 1000.0, offset: float = 5000.0) -> list[dict[str, Any]]:
    """Rows whose target (in the thousands by default) is offset + scale x the number of "sport" keywords (0-3)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        sport = i % 4
        words = rng.sample(KEYWORDS["sport"], k=sport) + rng.choices(FILLER, k=rng.randint(3, 6))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "target": offset + scale * sport + rng.uniform(-50, 50)})
    return rows


def pair_rows(count: int, *, seed: int = 0, regression: bool = False) -> list[dict[str, Any]]:
    """(text, text_pair) rows on one topic each side: label "same" / "different", or a similarity target 0-5."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        first = rng.choice(TAGS)
        second = first if i % 2 == 0 else rng.choice([tag for tag in TAGS if tag != first])
        row: dict[str, Any] = {"text": _sentence(rng, [first]), "text_pair": _sentence(rng, [second])}
        if regression:
            row["target"] = (4.5 if first == second else 0.5) + rng.uniform(-0.3, 0.3)
        else:
            row["label"] = "same" if first == second else "different"
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


IMAGE_TAGS = {"red_square": "red", "green_circle": "green", "blue_bar": "blue"}


def write_image_task_dataset(directory: Path, count: int, *, regression: bool = False, seed: int = 0) -> Path:
    """An image dataset of `make_image` shapes as multi-label rows {"image", "labels": [the shape's colour]} (the blue
    bars, a third of the rows, carry none) or as regression rows {"image", "target": 100 x the shape's index}."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    shapes = list(IMAGE_TAGS)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        shape = shapes[i % len(shapes)]
        name = f"images/{i:06d}.png"
        (directory / name).write_bytes(make_image(shape, seed=seed * 100_000 + i))
        row: dict[str, Any] = {"image": name}
        if regression:
            row["target"] = 100.0 * shapes.index(shape)
        else:
            row["labels"] = [] if shape == "blue_bar" else [IMAGE_TAGS[shape]]
        rows.append(row)
    random.Random(seed).shuffle(rows)
    return write_rows(directory / "data.jsonl", rows)
