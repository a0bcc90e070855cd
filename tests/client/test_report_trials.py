"""`tuneserve jobs report` of a FineTune(search=N) job: the trials section (its table, the metric-by-trial picture with
pruned trials apart and the best starred), no section for a job without a search, and the command on the fake server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneserve_client import Job
from tuneserve_client.cli.main import main
from tuneserve_client.cli.report import trials as report_trials
from tuneserve_client.cli.report.html import ReportInput, render_html
from tuneserve_client.proto.tuneserve.v1.training_pb2 import TrialState

from .conftest import FakeTuneServe
from .test_report import EVIL, SECTIONS, finished_job, parse_report, png_size, table_with

TRIALS = [
    {"number": 0, "state": TrialState.TRIAL_STATE_COMPLETE, "metric": 0.61, "duration_seconds": 12.34, "steps": 16,
     "params": {"learning_rate": "0.0001", "head_learning_rate": "0.003"}},
    {"number": 1, "state": TrialState.TRIAL_STATE_COMPLETE, "metric": 0.7483, "duration_seconds": 11.0, "steps": 16,
     "params": {"learning_rate": "0.0002", "head_learning_rate": "0.001"}, "best": True},
    {"number": 2, "state": TrialState.TRIAL_STATE_PRUNED, "metric": 0.2, "duration_seconds": 4.5, "steps": 8,
     "params": {"learning_rate": "1e-05", "head_learning_rate": "0.0001"},
     "reason": f"macro_f1 0.2000 at evaluation 2 was worse than the median {EVIL}"},
    {"number": 3, "state": TrialState.TRIAL_STATE_FAILED, "duration_seconds": 0.5,
     "params": {"learning_rate": "0.0001", "head_learning_rate": "0.01"}, "reason": "RuntimeError: out of memory"},
]  # fmt: skip


def searched_job() -> Job:
    job = finished_job(["sport", "politics"])
    for trial in TRIALS:
        job.result.trials.add(**trial)  # type: ignore[arg-type]
    return job


def test_a_search_job_has_a_trials_table_and_picture() -> None:
    page = render_html(ReportInput(job=searched_job()))
    parsed = parse_report(page)

    assert set(parsed.sections) == SECTIONS | {"trials"}
    assert parsed.sections.index("trials") == parsed.sections.index("learning-curves") + 1
    assert 'alt="validation macro_f1 by trial"' in page
    for src in parsed.images:
        png_size(src)
    rows = table_with(parsed, "trial")
    assert rows[0] == ["trial", "state", "validation macro_f1", "seconds", "steps", "best", "parameters", "reason"]
    assert rows[1] == ["0", "complete", "0.6100", "12.3", "16", "", "head_learning_rate 0.003, learning_rate 0.0001", ""]
    assert rows[2][:6] == ["1", "complete", "0.7483", "11.0", "16", "best"]
    assert rows[3][:6] == ["2", "pruned", "0.2000", "4.5", "8", ""] and rows[3][7].endswith(EVIL)
    assert rows[4][:3] == ["3", "failed", "-"] and rows[4][7] == "RuntimeError: out of memory"
    assert [r[5] for r in rows[1:]].count("best") == 1
    assert "script" not in parsed.tags and EVIL not in page  # the reason is escaped
    assert "4 trials (2 complete, 1 pruned, 1 failed); trial 1 was the best (macro_f1 0.7483)" in parsed.text


def test_the_picture_marks_pruned_trials_apart_and_stars_the_best() -> None:
    figure = report_trials.picture(searched_job().result.trials, "macro_f1")
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["complete", "pruned (its best before the stop)", "best: trial 1"]
    complete, pruned, best = axes.collections
    assert complete.get_offsets().tolist() == [[0, 0.61], [1, 0.7483]]
    assert pruned.get_offsets().tolist() == [[2, 0.2]]  # the failed trial has no metric to draw
    assert best.get_offsets().tolist() == [[1, 0.7483]]
    assert [tick for tick in axes.get_xticks()] == [0, 1, 2, 3]


def test_a_job_without_a_search_has_no_trials_section() -> None:
    parsed = parse_report(render_html(ReportInput(job=finished_job(["sport", "politics"]))))
    assert "trials" not in parsed.sections


def test_report_command_writes_the_trials_of_a_search_job(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path
) -> None:
    fake.final_job = searched_job()
    out_file = tmp_path / "r.html"
    assert main(["--target", fake.target, "jobs", "report", fake.final_job.id, "--out", str(out_file)]) == 0
    assert capsys.readouterr().err == ""
    parsed = parse_report(out_file.read_text())
    assert "trials" in parsed.sections and len(table_with(parsed, "trial")) == 1 + len(TRIALS)
