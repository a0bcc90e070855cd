"""`tuneserve jobs report`: the HTML page from a job result (sections, embedded pictures, escaping, the numbers), and
the command against the fake server (files, --dataset, jobs that did not succeed, matplotlib missing)."""

from __future__ import annotations

import base64
import struct
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tuneserve_client import (
    Backbone,
    ClassMetrics,
    Comparison,
    ConfusionMatrix,
    EvaluateResponse,
    EvaluationReport,
    Job,
    JobEvent,
    JobState,
    MetricDelta,
)
from tuneserve_client.cli.main import main
from tuneserve_client.cli.report.html import MATPLOTLIB_MISSING, ReportInput, render_html

from .conftest import FakeTuneServe, job_events

SECTIONS = {"summary", "learning-curves", "validation", "baselines", "verdicts", "hyperparameters", "backbone",
            "export"}  # fmt: skip
EVIL = "<script>alert('x')</script> & $x^2$"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ParsedReport:
    """What html.parser sees in a report: tags, section ids, images, the text and each table's cells."""

    tags: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every href/src that is not a data: URL
    text: str = ""
    tables: list[list[list[str]]] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.result = ParsedReport()
        self._chunks: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.result.tags.append(tag)
        values = dict(attrs)
        if tag == "section":
            self.result.sections.append(values["id"] or "")
        if tag == "img":
            self.result.images.append(values["src"] or "")
        for name in ("href", "src"):
            if values.get(name) and not (values[name] or "").startswith("data:"):
                self.result.links.append(values[name] or "")
        if tag == "table":
            self.result.tables.append([])
        elif tag == "tr":
            self.result.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.result.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def close(self) -> None:
        super().close()
        self.result.text = "".join(self._chunks)


def parse_report(page: str) -> ParsedReport:
    parser = _Parser()
    parser.feed(page)
    parser.close()
    return parser.result


def png_size(src: str) -> tuple[int, int]:
    """Width and height of a data: URL's PNG (from its IHDR chunk); asserts it is a real, non-trivial PNG."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) > 5000
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 150
    return width, height


def table_with(parsed: ParsedReport, header: str) -> list[list[str]]:
    return next(t for t in parsed.tables if t and t[0] and t[0][0] == header)


def finished_job(labels: list[str]) -> Job:
    matrix = ConfusionMatrix(labels=labels, rows=[{"counts": [5, 1]}, {"counts": [2, 4]}])
    per_class = [ClassMetrics(label=labels[0], precision=0.7143, recall=0.8333, f1=0.7692, support=6),
                 ClassMetrics(label=labels[1], precision=0.8, recall=0.6667, f1=0.7273, support=6)]  # fmt: skip
    curve = [{"step": 8, "epoch": 0.5, "train_loss": 1.1, "validation_loss": 0.9,
              "metrics": {"macro_f1": 0.55, "accuracy": 0.6}},
             {"step": 16, "epoch": 1.0, "train_loss": 0.7, "validation_loss": 0.6,
              "metrics": {"macro_f1": 0.7483, "accuracy": 0.75}}]  # fmt: skip
    return Job(
        id="job-7", state=JobState.JOB_STATE_SUCCEEDED, dataset_id="ds-1", backbone="minilm-l6", model_id="model-1",
        model_version=2, hyperparameters={"max_steps": 16, "learning_rate": 3e-5, "freeze": "top_k"},
        create_time={"seconds": 1_800_000_000}, start_time={"seconds": 1_800_000_002},
        end_time={"seconds": 1_800_000_062},
        result={
            "validation_metrics": {"macro_f1": 0.7483, "accuracy": 0.75, "loss": 0.6},
            "best_metric_name": "macro_f1", "best_metric": 0.7483, "best_step": 16, "train_seconds": 41.5,
            "samples_per_second": 12.5, "train_examples": 48, "validation_examples": 12, "device": "cpu",
            "precision": "fp32", "parity_max_abs_diff": 2.5e-6, "final_train_loss": 0.7, "learning_curve": curve,
            "fit": {"verdict": "good_fit", "rule": "train macro F1 0.9 vs validation 0.75: gap <= 0.1",
                    "train_validation_gap": 0.15},
            "baselines": [
                {"kind": "frozen", "model_id": "model-2", "validation_metrics": {"macro_f1": 0.41, "accuracy": 0.5},
                 "train_seconds": 12.0},
                {"kind": "scratch", "model_id": "model-3", "validation_metrics": {"macro_f1": 0.33, "accuracy": 0.42},
                 "train_seconds": 30.0},
            ],
            "transfer_verdict": "transfer helped: +41.8 macro-F1 points over scratch",
            "auto_actions": ["stopped at step 16 of 32 at the first sign of overfitting"],
            "variant_macro_f1": {"fp32": 0.7483},
            "validation_confusion_matrix": matrix, "validation_per_class": per_class,
        },
    )  # fmt: skip


def evaluation(labels: list[str]) -> EvaluateResponse:
    report = EvaluationReport(
        model_id="model-1", model_version=2, dataset_id="ds-test", num_examples=10, accuracy=0.9, macro_f1=0.8889,
        runtime="onnxruntime", confusion_matrix=ConfusionMatrix(labels=labels, rows=[{"counts": [4, 1]},
                                                                                      {"counts": [0, 5]}]),
        per_class=[ClassMetrics(label=labels[0], f1=0.8889, precision=1.0, recall=0.8, support=5),
                   ClassMetrics(label=labels[1], f1=0.9091, precision=0.8333, recall=1.0, support=5)],
    )  # fmt: skip
    compared = [EvaluationReport(model_id="model-2", model_version=1, macro_f1=0.6, accuracy=0.6)]
    comparison = Comparison(model_id="model-2", model_version=1, test="mcnemar", p_value=0.0313, only_first_correct=4,
                            only_second_correct=1, significant=True, verdict=f"fine-tuning beats frozen {EVIL}",
                            deltas=[MetricDelta(metric="macro_f1", delta=0.2889), MetricDelta(metric="accuracy",
                                                                                              delta=0.3)])  # fmt: skip
    return EvaluateResponse(report=report, compared=compared, comparisons=[comparison])


def test_report_sections_pictures_escaping_and_numbers() -> None:
    labels = ["sport", EVIL]
    job = finished_job(labels)
    events = [JobEvent(export={"format": "onnx", "parity_max_abs_diff": 2.5e-6, "parity_examples": 12,
                               "size_bytes": 3 * 1024 * 1024}),
              JobEvent(message="[baseline frozen] exported", export={"format": "onnx", "size_bytes": 1})]  # fmt: skip
    backbone = Backbone(name="minilm-l6", parameter_count=22_713_216, hidden_size=384, cpu_latency_ms=9.5,
                        latency_measured_on="batch 1, 128 tokens, 2 threads")  # fmt: skip
    page = render_html(ReportInput(job=job, events=events, backbone=backbone, evaluation=evaluation(labels)))
    parsed = parse_report(page)

    assert set(parsed.sections) == SECTIONS | {"test-evaluation"}
    assert parsed.links == []  # self-contained
    # learning curves, validation confusion + per class, test confusion + per class, baselines, test comparison
    assert len(parsed.images) == 7
    for src in parsed.images:
        png_size(src)

    # user data is escaped: the label is text, never markup
    assert "script" not in parsed.tags
    assert "<script>" not in page and EVIL not in page
    assert parsed.text.count(EVIL) >= 4  # validation and test tables, per class, the comparison verdict

    # the numbers are the job's
    r = job.result
    curve = table_with(parsed, "step")
    assert curve[1:] == [["8", "0.50", "1.1000", "0.9000", "0.6000", "0.5500"],
                         ["16", "1.00", "0.7000", "0.6000", "0.7500", "0.7483"]]  # fmt: skip
    confusion = [t for t in parsed.tables if t[0][0] == "true \\ predicted"]
    assert confusion[0] == [["true \\ predicted", *labels], ["sport", "5", "1"], [EVIL, "2", "4"]]
    assert confusion[1][1:] == [["sport", "4", "1"], [EVIL, "0", "5"]]
    per_class = table_with(parsed, "label")
    assert per_class[2] == [EVIL, "0.8000", "0.6667", "0.7273", "6"]
    baselines = table_with(parsed, "run")
    assert baselines[1:] == [["fine-tuned", "model-1", "0.7483", "0.7500", "41.5"],
                             ["frozen", "model-2", "0.4100", "0.5000", "12.0"],
                             ["scratch", "model-3", "0.3300", "0.4200", "30.0"]]  # fmt: skip
    comparison = table_with(parsed, "compared model")
    assert comparison[1] == ["model-2 v1", "0.6000", "+0.2889", "0.6000", "+0.3000", "4", "1", "0.0313", "yes"]
    assert f"{r.best_metric:.4f} at step 16" in parsed.text
    assert r.fit.rule in parsed.text and r.transfer_verdict in parsed.text and "+0.1500" in parsed.text
    assert "what auto did" in parsed.text and r.auto_actions[0] in parsed.text
    assert ["learning_rate", "3e-05"] in table_with(parsed, "name") and ["freeze", "top_k"] in table_with(parsed, "name")
    assert "3.0 MiB" in parsed.text and "2.5e-06" in parsed.text  # the fine-tune's export, not the baseline's
    assert "9.5 ms (batch 1, 128 tokens, 2 threads)" in parsed.text and "22,713,216" in parsed.text
    assert "job wall time" in parsed.text and "60.0 s (training, export, baselines)" in parsed.text


def test_report_of_a_minimal_result_says_what_is_missing() -> None:
    job = Job(id="job-1", state=JobState.JOB_STATE_SUCCEEDED, model_id="m", model_version=1,
              result={"validation_metrics": {"macro_f1": 0.5}, "best_metric_name": "macro_f1"})  # fmt: skip
    parsed = parse_report(render_html(ReportInput(job=job)))
    assert set(parsed.sections) == SECTIONS and parsed.images == []
    assert "recorded no evaluations" in parsed.text and "trained no baselines" in parsed.text
    assert "no per-class validation figures" in parsed.text
    assert "refit" not in parsed.text


def test_report_of_a_refit_says_whose_figures_are_shown() -> None:
    job = Job(id="job-1", state=JobState.JOB_STATE_SUCCEEDED, model_id="m", model_version=1,
              result={"validation_metrics": {"macro_f1": 0.5}, "best_metric_name": "macro_f1", "refit": True,
                      "refit_steps": 38, "refit_examples": 64, "refit_seconds": 4.0})  # fmt: skip
    text = " ".join(parse_report(render_html(ReportInput(job=job))).text.split())
    assert "the served model was retrained on 64 train+validation rows for 38 steps (4.0 s); the job's validation " \
           "figures are the first run's best checkpoint" in text
    job.result.refit_members = 3  # a search's refit soup
    text = " ".join(parse_report(render_html(ReportInput(job=job))).text.split())
    assert "for 38 steps (4.0 s), 3 refits in their own row orders averaged; the job's validation" in text


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_command_writes_the_file_and_evaluates_beside_the_baselines(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path
) -> None:
    fake.final_job = finished_job(["neg", "pos"])
    out_file = tmp_path / "r.html"
    code, out, err = run(capsys, "--target", fake.target, "jobs", "report", "job-7", "--out", str(out_file),
                         "--dataset", "ds-test")  # fmt: skip
    assert (code, err) == (0, "") and out.strip() == f"wrote the report of job job-7 to {out_file}"
    request = fake.requests["Evaluate"][0]
    assert (request.model_id, request.version, request.dataset_id) == ("model-1", 2, "ds-test")
    assert [(ref.model_id, ref.version) for ref in request.compare] == [("model-2", 0), ("model-3", 0)]
    parsed = parse_report(out_file.read_text())
    assert "test-evaluation" in parsed.sections and "all-MiniLM-L6-v2" in parsed.text  # the catalog entry
    assert list(tmp_path.iterdir()) == [out_file]  # no temporary file left behind

    code, out, _ = run(capsys, "--target", fake.target, "--json", "jobs", "report", "job-7", "--out", str(out_file))
    assert code == 0 and out.strip() == f'{{"job_id": "job-7", "path": "{out_file}"}}'
    assert len(fake.requests["Evaluate"]) == 1  # no --dataset: no Evaluate


@pytest.mark.parametrize("state", [JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_FAILED])
def test_a_job_that_did_not_succeed_gets_no_report(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path, state: JobState
) -> None:
    fake.final_job = Job(id="job-1", state=state, error="worker died" if state == JobState.JOB_STATE_FAILED else "")
    fake.events = job_events("job-1")
    code, out, err = run(capsys, "--target", fake.target, "jobs", "report", "job-1", "--out", str(tmp_path / "r"))
    name = JobState.Name(state).removeprefix("JOB_STATE_").lower()
    assert code == 2 and out == "" and err.startswith(f"error: job job-1 is {name}") and "succeeded job" in err
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_one_line_says_what_to_install(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, out, err = run(capsys, "--target", fake.target, "jobs", "report", "job-1", "--out", str(tmp_path / "r"))
    assert (code, out, err) == (1, "", MATPLOTLIB_MISSING + "\n")
    assert "tuneserve[report]" in err and "GetJob" not in fake.requests
