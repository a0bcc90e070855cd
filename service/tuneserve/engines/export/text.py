"""ONNX export of a fine-tuned text model, gated by a parity check against PyTorch.

The graph is one self-contained .onnx file whose inputs are named and ordered as the model's forward() takes them
(input_ids, attention_mask[, token_type_ids]) and whose output is `logits` (the head's raw outputs: class logits,
per-label logits or the standardised regression value), with dynamic batch and sequence axes. A cross-encoder pair
model takes the same inputs: its tokenizer encodes (text, text_pair) as one sequence. A bi-encoder (pair_encoding
"bi") takes each text's own inputs, the second's names ending in `_pair` (input_ids, attention_mask[, token_type_ids],
input_ids_pair, attention_mask_pair[, token_type_ids_pair]), each with its own sequence axis; the one backbone's
weights serve both texts, and `logits` is the head's output on their pooled vectors. The parity check compares the raw outputs (max
|diff|) and asks the task whether the decisions are the same (`Task.parity`: argmax, or each label at its tuned
threshold).

A BERT-family backbone is served as the fused graph ONNX Runtime's transformer optimizer makes of it (one Attention
op per layer and encoded text, SkipLayerNormalization, BiasGelu), which needs about 15% less CPU time than the plain export for a
batch of 32 (bench/RESULTS.md); other backbones, or one the optimizer does not fuse completely, are served as the
plain graph. The parity check always runs on the graph that is written, i.e. served.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.spec import PAIR_INPUT_SUFFIX
from tuneserve.tasks import Task, TaskParams

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_EXAMPLES = 64
# NOTE: config.model_type values whose encoder layers have BERT's shape, which the optimizer's "bert" fusion matches
FUSED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
# the ops a fused graph holds, as the parity report and the tests count them
FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu")


# A text input: one text, a (text, text_pair) pair for a pair model, or a sentence's words (token classification).
TextInput = str | tuple[str, str] | list[str]


class ParityCheckFailed(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the exported model's logits."""


class ExportError(RuntimeError):
    """The exporter produced something the runtime cannot serve as one file."""


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    argmax_agreement: int     # rows whose argmax agrees (what single-label decides; reported for every task)
    examples: int
    decisions: str = ""       # the task's difference in decisions ("" = the same decisions)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_names: list[str]
    size_bytes: int
    parity: ParityReport
    fused_ops: dict[str, int] = field(default_factory=dict)  # FUSED_OPS -> count; empty for a plain graph


class _NotFused(RuntimeError):
    """The optimizer left part of the encoder unfused; the plain graph is served instead."""


def export_onnx(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    output_path: Path,
    *,
    example_texts: list[TextInput],
    max_seq_length: int,
    fuse: bool = True,
    params: TaskParams | None = None,
) -> ExportReport:
    """Export to output_path, then check parity on example_texts (raise ParityCheckFailed when it fails).

    The model is moved to the CPU in fp32 and put in eval mode (dropout off), as it is served. fuse=False writes the
    plain graph even for a backbone that fuses (the benchmarks compare the two). `params`: the task parameters the
    decisions are compared at (the model's task, default thresholds when None).
    """
    model = model.to("cpu").float().eval()
    input_names = model.input_names(tokenizer)
    parity_texts = example_texts[:PARITY_EXAMPLES]
    if fuse and model.backbone.config.model_type in FUSED_MODEL_TYPES:
        try:
            fused_ops = _export_fused(model, tokenizer, output_path, example_texts, max_seq_length)
            parity = check_parity(
                output_path, model, tokenizer, parity_texts, max_seq_length=max_seq_length, params=params
            )
            return ExportReport(output_path, input_names, output_path.stat().st_size, parity, fused_ops)
        except (_NotFused, ParityCheckFailed) as exc:
            # NOTE: a fusion that does not match (an unusual layer) is a slower graph, not a failed fine-tune
            log.warning("serving the plain ONNX graph: the fused one is not usable (%s)", exc)
    _export_graph(model, tokenizer, output_path, example_texts, max_seq_length)
    parity = check_parity(output_path, model, tokenizer, parity_texts, max_seq_length=max_seq_length, params=params)
    return ExportReport(output_path, input_names, output_path.stat().st_size, parity)


def _export_graph(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    output_path: Path,
    example_texts: list[TextInput],
    max_seq_length: int,
) -> None:
    input_names = model.input_names(tokenizer)
    examples = tokenize(
        tokenizer, _shortest_and_longest(example_texts), max_seq_length, "pt", separate_pairs=model.bi_encoder
    )
    # NOTE: a per-token head answers [batch, sequence, labels]
    logits_axes = {0: "batch", 1: "sequence"} if model.task.per_token else {0: "batch"}
    dynamic_axes = {
        name: {0: "batch", 1: "sequence_pair" if name.endswith(PAIR_INPUT_SUFFIX) else "sequence"}
        for name in input_names
    } | {"logits": logits_axes}
    with torch.no_grad(), warnings.catch_warnings():
        # NOTE: tracing warns about every Python-level shape check in transformers' masking code; the parity check
        # below is what proves the traced graph generalises to other batch and sequence sizes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        torch.onnx.export(
            model,
            # NOTE: args bind to forward() by position and input_names name them by position: both must follow
            # forward()'s order, never the tokenizer's dict order (input_ids, token_type_ids, attention_mask).
            _positional(model, {name: examples[name] for name in input_names}),
            str(output_path),
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            # NOTE: the dynamo exporter (torch 2.13's default) writes weights to an external .onnx.data file.
            dynamo=False,
        )
    _check_self_contained(output_path)


def _positional(model: TextClassifier, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """The inputs as forward()'s positional arguments: None for a parameter the model does not take (a bi-encoder
    without token types: token_type_ids), which the traced graph leaves out; nothing after the last input."""
    names = [name for name in inspect.signature(model.forward).parameters if name != "labels"]
    args = [inputs.get(name) for name in names]
    while args and args[-1] is None:
        args.pop()
    return tuple(args)


def _export_fused(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    output_path: Path,
    example_texts: list[TextInput],
    max_seq_length: int,
) -> dict[str, int]:
    """Export the plain graph with eager attention, fuse it with ONNX Runtime's transformer optimizer into
    output_path, and return the fused ops' counts (raise _NotFused unless every encoder layer became one Attention)."""
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.backbone.config
    options = FusionOptions("bert")
    # NOTE: the raw [batch, sequence] mask, as the plain graph takes it: a mask index would assume right padding.
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    # NOTE: EmbedLayerNormalization would hide the word embeddings (half of MiniLM's bytes) from the int8 variant's
    # Gather quantisation, and it saves little: the embeddings are a small part of the work.
    options.enable_embed_layer_norm = False
    with tempfile.TemporaryDirectory(dir=output_path.parent, prefix=".export-") as work:
        plain = Path(work) / "plain.onnx"
        # NOTE: transformers' SDPA attention exports with IsNaN/Where guards that the optimizer does not match;
        # eager attention computes the same softmax(QK^T/sqrt(d) + mask)V in the shape it fuses.
        with _attention_implementation(model, "eager"):
            _export_graph(model, tokenizer, plain, example_texts, max_seq_length)
        optimized = optimize_model(
            str(plain),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            optimization_options=options,
            # NOTE: the optimizer's own fusions only; ONNX Runtime's generic graph optimisations run when a session
            # loads the graph (engines/runtime.py), where they can use what the serving hardware offers.
            opt_level=0,
        )
    statistics = optimized.get_fused_operator_statistics()
    fused_ops = {op: int(statistics.get(op, 0)) for op in FUSED_OPS}
    # NOTE: a bi-encoder's graph runs the encoder twice (once per text), each pass fused on its own
    layers = int(config.num_hidden_layers) * (2 if model.bi_encoder else 1)
    if fused_ops["Attention"] != layers or fused_ops["SkipLayerNormalization"] != 2 * layers:
        raise _NotFused(f"{fused_ops} for {layers} encoder layers")
    optimized.save_model_to_file(str(output_path), use_external_data_format=False)
    _check_self_contained(output_path)
    log.info("exported the fused ONNX graph: %s", fused_ops)
    return fused_ops


@contextlib.contextmanager
def _attention_implementation(model: TextClassifier, name: str) -> Iterator[None]:
    previous = model.backbone.config._attn_implementation
    model.backbone.set_attn_implementation(name)
    try:
        yield
    finally:
        model.backbone.set_attn_implementation(previous)


def check_parity(
    onnx_path: Path,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[TextInput],
    *,
    max_seq_length: int,
    tolerance: float = PARITY_TOLERANCE,
    batch_size: int = 16,
    task: Task | None = None,
    params: TaskParams | None = None,
) -> ParityReport:
    """Compare ONNX Runtime (CPU) with PyTorch (CPU, fp32, eval) raw outputs on padded batches of texts: max |diff|
    within tolerance and the task's decisions the same (`Task.parity`; task None = the model's)."""
    task = task or model.task
    params = params or TaskParams(task=task.name)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_inputs = [i.name for i in session.get_inputs()]
    torch_inputs = model.input_names(tokenizer)
    references, exported = [], []
    for start in range(0, len(texts), batch_size):
        batch = tokenize(
            tokenizer, texts[start : start + batch_size], max_seq_length, "np", separate_pairs=model.bi_encoder
        )
        onnx_out = session.run(["logits"], {name: batch[name] for name in onnx_inputs})[0]
        with torch.no_grad():
            torch_out = model(**{name: torch.from_numpy(batch[name]) for name in torch_inputs}).logits.numpy()
        if onnx_out.ndim == 3:  # NOTE: per-token logits: the batch's real tokens [K, L] (padding decides nothing)
            mask = batch["attention_mask"].astype(bool)
            onnx_out, torch_out = onnx_out[mask], torch_out[mask]
        exported.append(onnx_out)
        references.append(torch_out)
    return judge_parity(np.concatenate(references), np.concatenate(exported), task, params, tolerance)


def judge_parity(
    reference: np.ndarray, exported: np.ndarray, task: Task, params: TaskParams, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """The parity of two runs' raw outputs on the same rows; raise ParityCheckFailed with the numbers when it fails."""
    max_diff, decisions = task.parity(reference, exported, params)
    agree = int((reference.argmax(-1) == exported.argmax(-1)).sum())
    report = ParityReport(max_abs_diff=max_diff, argmax_agreement=agree, examples=len(reference), decisions=decisions)
    if max_diff > tolerance or decisions:
        raise ParityCheckFailed(
            f"ONNX parity check failed ({task.name}): max |logit diff| {max_diff:.1e} (limit {tolerance:.0e}), "
            f"argmax agreement {agree}/{len(reference)}" + (f"; {decisions}" if decisions else "")
        )
    return report


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[TextInput], max_seq_length: int, tensors: str, *,
    separate_pairs: bool = False,
) -> BatchEncoding:
    """Padded model inputs of texts, of (text, text_pair) pairs encoded together (separate_pairs: each text alone,
    the second's names ending in PAIR_INPUT_SUFFIX, as a bi-encoder reads them), or of sentences' words
    (is_split_into_words), as serving tokenizes them."""
    if texts and isinstance(texts[0], list):
        words: BatchEncoding = tokenizer(
            [list(words) for words in texts], is_split_into_words=True, padding=True, truncation=True,
            max_length=max_seq_length, return_tensors=tensors,
        )
        return words
    if texts and isinstance(texts[0], tuple):
        firsts, seconds = [pair[0] for pair in texts], [pair[1] for pair in texts]
        if separate_pairs:
            first = tokenizer(firsts, padding=True, truncation=True, max_length=max_seq_length, return_tensors=tensors)
            second = tokenizer(seconds, padding=True, truncation=True, max_length=max_seq_length, return_tensors=tensors)
            return BatchEncoding({**first, **{name + PAIR_INPUT_SUFFIX: value for name, value in second.items()}})
        encoded: BatchEncoding = tokenizer(
            firsts, seconds, padding=True, truncation=True, max_length=max_seq_length, return_tensors=tensors
        )
        return encoded
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_seq_length, return_tensors=tensors)
    return encoded


def _shortest_and_longest(texts: list[TextInput]) -> list[TextInput]:
    # NOTE: a traced example with padding exercises the attention-mask path, so nothing mask-dependent is
    # constant-folded for the all-ones case.
    if not texts:
        raise ExportError("ONNX export needs at least one example text")
    return [min(texts, key=_length), max(texts, key=_length)]


def _length(text: TextInput) -> int:
    if isinstance(text, list):
        return sum(len(word) + 1 for word in text)
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])


def _check_self_contained(path: Path) -> None:
    graph = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"{path.name} keeps {len(external)} tensors in external data files; it must be one file")
    onnx.checker.check_model(graph)
