"""`tuneserve recommend`: rank backbones for a dataset by LogME on frozen features (RecommendBackbone). `_cli` calls
`add_command` to register it; the server validates the values (INVALID_ARGUMENT says what to fix)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console

from tuneserve_client._sync import Client
from tuneserve_client.cli import render
from tuneserve_client.proto.tuneserve.v1.common_pb2 import Modality
from tuneserve_client.proto.tuneserve.v1.training_pb2 import CandidateStatus, RecommendBackboneResponse

if TYPE_CHECKING:
    from tuneserve_client.cli.common import Output

HELP = "rank backbones for a dataset by a transferability estimate (LogME) of their frozen features"


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("recommend", help=HELP, description=HELP)
    parser.set_defaults(handler=recommend)
    parser.add_argument("--dataset", required=True, metavar="ID", help="the labelled dataset to transfer to")
    parser.add_argument(
        "--backbones",
        type=_names,
        default=[],
        metavar="A,B",
        help="candidates: catalog names or local model directories (default: every catalog backbone of the "
        "dataset's modality)",
    )
    parser.add_argument(
        "--max-examples", type=int, default=0, metavar="N", help="stratified sample size (server default 1000)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time budget for all candidates together (server default 300); the call's deadline is the budget plus a "
        "minute, or --timeout if longer",
    )
    parser.add_argument("--max-seq-length", type=int, default=0, metavar="N", help="text: tokens per example (128)")


def recommend(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.recommend_backbone(
        args.dataset, backbones=args.backbones, max_examples=args.max_examples, time_budget_seconds=args.budget,
        max_seq_length=args.max_seq_length,
    )
    out.show(response, ranking)
    return 0


def ranking(console: Console, response: RecommendBackboneResponse) -> None:
    table = render._table("RANK", "BACKBONE", "LOGME", "PROBE ACC", "EXAMPLES", "DIM", "SECONDS", "STATUS")
    for c in response.ranking:
        status = render._enum(CandidateStatus.Name(c.status), "CANDIDATE_STATUS_")
        table.add_row(
            str(c.rank) if c.rank else "-",
            c.backbone,
            f"{c.score:.4f}" if c.HasField("score") else "-",
            f"{c.probe_accuracy:.3f}" if c.HasField("probe_accuracy") else "-",
            str(c.examples) if c.examples else "-",
            str(c.feature_dim) if c.feature_dim else "-",
            f"{c.seconds:.1f}",
            status + (f": {c.reason}" if c.reason else ""),
        )
    table.columns[-1].max_width = 70
    render._print_table(console, table)
    modality = {c.modality for c in response.ranking} - {Modality.MODALITY_UNSPECIFIED}
    kinds = "/".join(sorted(render._enum(Modality.Name(m), "MODALITY_") for m in modality))
    console.print(
        f"{response.method}: {response.examples} examples of dataset {response.dataset_id}"
        + (f" ({kinds})" if kinds else "")
        + f", {response.seconds_total:.1f} s of a {response.time_budget_seconds:g} s budget. LogME is the mean log "
        "evidence per example of a linear model on the frozen features: higher transfers better; compare scores "
        "on the same dataset only.",
        soft_wrap=True,
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]
