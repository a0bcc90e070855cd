"""`tuneserve predict`: predict for texts (TEXT arguments, each with its --text-pair for a pair model) or images
(--image FILE) with a served model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneserve_client._sync import Client
from tuneserve_client.cli import render
from tuneserve_client.cli.common import Output, Subcommands, command


def add_command(commands: Subcommands) -> None:
    predict = command(commands, "predict", _predict, "predict labels or values for texts, text pairs or images")
    predict.add_argument("--model", required=True, metavar="ID")
    predict.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    predict.add_argument("--top-k", type=int, default=0, metavar="K", help="label scores per text (default: all)")
    predict.add_argument(
        "--alias", default="", metavar="A", help="a version alias (latest, production...); overrides --version"
    )
    predict.add_argument("--variant", default="", metavar="V", help="fp32 (default) or int8 when the model has one")
    predict.add_argument(
        "--image", dest="images", action="append", default=[], metavar="FILE",
        help="an image file (JPEG, PNG, WEBP, BMP) for an image model; repeat for several",
    )
    predict.add_argument(
        "--text-pair", dest="text_pairs", action="append", default=[], metavar="TEXT",
        help="for a pair model: the second text of a pair; the i-th --text-pair goes with the i-th TEXT",
    )
    predict.add_argument("texts", nargs="*", metavar="TEXT")


def _predict(client: Client, args: argparse.Namespace, out: Output) -> int:
    if bool(args.texts) == bool(args.images):
        raise ValueError("give TEXT arguments (a text model) or --image FILE options (an image model), one kind only")
    if args.text_pairs and len(args.text_pairs) != len(args.texts):
        raise ValueError(
            f"{len(args.texts)} TEXT arguments and {len(args.text_pairs)} --text-pair options: a pair model takes one "
            "--text-pair per TEXT (the i-th goes with the i-th TEXT)"
        )
    images = [Path(path).read_bytes() for path in args.images]
    response = client.predict(
        args.model, args.texts, text_pairs=args.text_pairs, images=images, version=args.version, top_k=args.top_k,
        alias=args.alias, variant=args.variant,
    )
    if out.json:
        out.show(response, lambda console, r: None)
        return 0
    # NOTE: the model's task picks the table's columns (a multi-label answer with no label over its threshold looks
    # like any other); --json needs no second call
    task = client.get_model(args.model).task
    if images:
        rows, header = args.images, "IMAGE"
    elif args.text_pairs:
        rows, header = [f"{t} | {p}" for t, p in zip(args.texts, args.text_pairs, strict=True)], "TEXT | TEXT PAIR"
    else:
        rows, header = args.texts, "TEXT"
    out.show(response, lambda console, r: render.predictions(console, r, rows, header=header, task=task))
    return 0
