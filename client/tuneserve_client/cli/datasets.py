"""`tuneserve datasets upload|list|get|delete`."""

from __future__ import annotations

import argparse

from tuneserve_client._sync import Client
from tuneserve_client.cli import render_datasets as render
from tuneserve_client.cli.common import Output, Subcommands, command, group, paging


def add_datasets(commands: Subcommands) -> None:
    datasets = group(commands, "datasets", "upload and manage labelled datasets")
    upload = command(
        datasets, "upload", _upload, "upload a CSV or JSONL file, a CoNLL file of tagged tokens, or a zip of images in class folders"
    )
    upload.add_argument("path", metavar="PATH")
    upload.add_argument("--name", help="display name (default: the file name)")
    upload.add_argument("--format", choices=["csv", "jsonl", "conll", "zip"], help="default: from the file name's extension")
    upload.add_argument("--text-column", default="", metavar="C", help="column of the text (default text)")
    upload.add_argument("--label-column", default="", metavar="C", help="column of the label (default label)")
    upload.add_argument(
        "--image-column", default="", metavar="C", help="JSONL field holding base64 images (makes it an image dataset)"
    )
    upload.add_argument(
        "--task", choices=["classification", "multi-label", "regression", "token-classification"],
        help="default: from the columns (a labels column: multi-label; target: regression; else classification)",
    )
    upload.add_argument("--labels-column", default="", metavar="C", help="multi-label: column of the labels (default labels)")
    upload.add_argument(
        "--label-separator", default="", metavar="S", help="multi-label CSV: what separates a cell's labels (default |)"
    )
    upload.add_argument("--target-column", default="", metavar="C", help="regression: column of the number (default target)")
    upload.add_argument(
        "--text-pair-column", default="", metavar="C", help="column of the second text of a pair (default text_pair)"
    )
    upload.add_argument(
        "--tokens-column", default="", metavar="C", help="token classification JSONL: field of the words (default tokens)"
    )
    upload.add_argument(
        "--tags-column", default="", metavar="C", help="token classification JSONL: field of the tags (default tags)"
    )
    upload.add_argument(
        "--stray-i-tags", choices=["repair", "refuse"], default="",
        help="token classification: an I- tag that continues no entity becomes B- and is counted (repair, default) "
        "or refuses the upload naming its line",
    )
    paging(command(datasets, "list", _list, "list datasets"))
    command(datasets, "get", _get, "show a dataset").add_argument("id", metavar="ID")
    command(datasets, "delete", _delete, "delete a dataset").add_argument("id", metavar="ID")


def _upload(client: Client, args: argparse.Namespace, out: Output) -> int:
    dataset = client.upload_dataset(
        args.path, name=args.name, format=args.format, text_column=args.text_column, label_column=args.label_column,
        image_column=args.image_column, task=args.task, labels_column=args.labels_column,
        label_separator=args.label_separator, target_column=args.target_column, text_pair_column=args.text_pair_column,
        tokens_column=args.tokens_column, tags_column=args.tags_column, stray_i_tags=args.stray_i_tags,
    )
    out.show(dataset, render.dataset)
    return 0


def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_datasets(page_size=args.page_size, page_token=args.page_token), render.datasets)
    return 0


def _get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_dataset(args.id), render.dataset)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.done(client.delete_dataset(args.id), f"deleted dataset {args.id}")
    return 0
