"""The CLI's transfer-learning options: the fine-tuning strategy flags and `--baselines` of `finetune`, and
`evaluate --compare`. `_cli` adds them to its parsers; the server validates the values (INVALID_ARGUMENT says what
to fix)."""

from __future__ import annotations

import argparse

# finetune flags that set Hyperparameters fields: the dest of each flag is the field's name
STRATEGY_HYPERPARAMETERS = (
    "freeze",
    "trainable_layers",
    "layer_lr_decay",
    "gradual_unfreezing",
    "gradient_accumulation_steps",
    "lr_scheduler",
    "augment_flip",
    "augment_random_resized_crop",
)


def add_finetune_options(finetune: argparse.ArgumentParser, hp: argparse._ArgumentGroup) -> None:
    hp.add_argument(
        "--freeze",
        choices=["none", "all", "top_k"],
        help="which backbone weights train: none (all of them), all (none: a linear probe of the head), "
        "top_k (the last --trainable-layers blocks)",
    )
    hp.add_argument("--trainable-layers", type=int, metavar="K", help="blocks that train under --freeze top_k")
    hp.add_argument("--layer-lr-decay", type=float, metavar="X", help="block i from the top trains at lr * X^i (1: off)")
    hp.add_argument(
        "--gradual-unfreezing",
        action="store_true",
        default=None,
        help="train the head alone first, then one more block from the top each epoch",
    )
    hp.add_argument(
        "--grad-accum", dest="gradient_accumulation_steps", type=int, metavar="N", help="batches per optimizer step"
    )
    hp.add_argument("--lr-scheduler", choices=["linear", "cosine", "constant"], help="the schedule after warm-up")
    # NOTE: default None leaves the field unset, so the server's default (on) applies; --no-... turns it off.
    hp.add_argument(
        "--augment-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="image backbones: random horizontal flips of training images (server default: on)",
    )
    hp.add_argument(
        "--augment-crop",
        dest="augment_random_resized_crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="image backbones: random resized crops of training images (server default: on)",
    )
    finetune.add_argument(
        "--baselines",
        type=_names,
        default=[],
        metavar="KINDS",
        help="also train, under the same budget: frozen (head only), scratch (random init); e.g. frozen,scratch",
    )
    finetune.add_argument(
        "--search",
        type=int,
        default=0,
        metavar="N",
        help="run N trials (Optuna TPE, pruned) over the hyperparameters you leave unset; the best becomes the model",
    )
    finetune.add_argument(
        "--search-budget",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wall-time budget of --search: no trial starts past it (0 = the server's default)",
    )


def add_compare_option(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument(
        "--compare",
        type=_model_refs,
        default=[],
        metavar="ID[:N],...",
        help="also evaluate these models (version N, default the latest ready) on the same rows and test the "
        "difference (McNemar)",
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _model_refs(text: str) -> list[tuple[str, int]]:
    refs = []
    for item in _names(text):
        model_id, _, version = item.partition(":")
        try:
            refs.append((model_id, int(version) if version else 0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: write ID or ID:VERSION (VERSION a number)") from None
    return refs
