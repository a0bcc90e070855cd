"""`tuneserve predict`: classify texts (TEXT arguments) or images (--image FILE) with a served model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneserve_client._sync import Client
from tuneserve_client.cli import render
from tuneserve_client.cli.common import Output, Subcommands, command


def add_command(commands: Subcommands) -> None:
    predict = command(commands, "predict", _predict, "classify texts or images")
    predict.add_argument("--model", required=True, metavar="ID")
    predict.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    predict.add_argument("--top-k", type=int, default=0, metavar="K", help="class scores per text (default: all)")
    predict.add_argument(
        "--alias", default="", metavar="A", help="a version alias (latest, production...); overrides --version"
    )
    predict.add_argument("--variant", default="", metavar="V", help="fp32 (default) or int8 when the model has one")
    predict.add_argument(
        "--image", dest="images", action="append", default=[], metavar="FILE",
        help="an image file (JPEG, PNG, WEBP, BMP) for an image model; repeat for several",
    )
    predict.add_argument("texts", nargs="*", metavar="TEXT")


def _predict(client: Client, args: argparse.Namespace, out: Output) -> int:
    if bool(args.texts) == bool(args.images):
        raise ValueError("give TEXT arguments (a text model) or --image FILE options (an image model), one kind only")
    images = [Path(path).read_bytes() for path in args.images]
    response = client.predict(
        args.model, args.texts, images=images, version=args.version, top_k=args.top_k, alias=args.alias,
        variant=args.variant,
    )
    if images:
        out.show(response, lambda console, r: render.predictions(console, r, args.images, header="IMAGE"))
    else:
        out.show(response, lambda console, r: render.predictions(console, r, args.texts))
    return 0
