"""`tuneserve evaluate`, `tuneserve models list|get|delete|load|unload|alias` and `tuneserve backbones`."""

from __future__ import annotations

import argparse

from tuneserve_client._sync import Client
from tuneserve_client.cli import render, render_evaluation, transfer
from tuneserve_client.cli.common import Output, Subcommands, command, group, paging


def add_evaluate(commands: Subcommands) -> None:
    evaluate = command(commands, "evaluate", _evaluate, "evaluate a model on a dataset")
    evaluate.add_argument("--model", required=True, metavar="ID")
    evaluate.add_argument("--dataset", required=True, metavar="ID")
    evaluate.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    transfer.add_compare_option(evaluate)


def add_models(commands: Subcommands) -> None:
    models = group(commands, "models", "list and manage fine-tuned models")
    paging(command(models, "list", _list, "list models"))
    command(models, "get", _get, "show a model and its versions").add_argument("id", metavar="ID")
    command(models, "delete", _delete, "delete a model").add_argument("id", metavar="ID")
    load = command(models, "load", _load, "open and warm up a version's session now")
    load.add_argument("id", metavar="ID")
    load.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    load.add_argument("--variant", default="", metavar="V", help="fp32 (default) or int8")
    unload = command(models, "unload", _unload, "close a version's sessions (default: every version)")
    unload.add_argument("id", metavar="ID")
    unload.add_argument("--version", type=int, default=0, metavar="N", help="default: every loaded version")
    alias = command(models, "alias", _alias, "point an alias at a ready version (version 0 removes it)")
    alias.add_argument("id", metavar="ID")
    alias.add_argument("name", metavar="NAME", help="lowercase letters, digits and '-', e.g. production")
    alias.add_argument("version", type=int, metavar="VERSION")


def add_backbones(commands: Subcommands) -> None:
    command(commands, "backbones", _backbones, "list the pretrained backbones the server offers")


def _evaluate(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.evaluate(args.model, args.dataset, version=args.version, compare=args.compare)
    out.show(response, render_evaluation.evaluation_response)
    return 0


def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_models(page_size=args.page_size, page_token=args.page_token), render.models)
    return 0


def _get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_model(args.id), render.model)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.done(client.delete_model(args.id), f"deleted model {args.id}")
    return 0


def _load(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.load_model(args.id, version=args.version, variant=args.variant), render.model)
    return 0


def _unload(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.unload_model(args.id, version=args.version), render.model)
    return 0


def _alias(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.set_model_alias(args.id, args.name, args.version), render.model)
    return 0


def _backbones(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_backbones(), render.backbones)
    return 0
