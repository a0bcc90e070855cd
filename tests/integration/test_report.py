"""`tuneserve jobs report` on a real finished job: a tiny fine-tune with both baselines on the real server, reported
with --dataset through the in-process CLI; the page is parsed and its figures checked against the job's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.test_report import SECTIONS, parse_report, png_size, table_with
from tests.conftest import ServerThread
from tests.fixtures import make_texts
from tests.integration.conftest import QUICK, TEST_COUNTS, TRAIN_COUNTS
from tuneserve_client import Client, JobState
from tuneserve_client.cli.main import main

# NOTE: a label is user data that reaches the page in tables and pictures: it must arrive as text, never as markup.
EVIL = "<script>alert('tech')</script> & $x$"
RENAME = {"tech": EVIL}


def _write(path: Path, counts: dict[str, int], seed: int) -> Path:
    rows = make_texts(counts, seed=seed)
    path.write_text("".join(json.dumps({"text": text, "label": RENAME.get(label, label)}) + "\n" for text, label in rows))
    return path


def test_report_of_a_finished_job_with_baselines(
    capsys: pytest.CaptureFixture[str], server: ServerThread, client: Client, tiny_bert: Path, tmp_path: Path
) -> None:
    train = client.upload_dataset(_write(tmp_path / "train.jsonl", TRAIN_COUNTS, seed=1))
    test = client.upload_dataset(_write(tmp_path / "test.jsonl", TEST_COUNTS, seed=2))
    job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="topics",
                           hyperparameters={**QUICK, "max_steps": 16}, baselines=["frozen", "scratch"])  # fmt: skip
    done = client.wait_for_job(job.id, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
    r = done.result

    # the job's own validation figures (the report's validation section draws them)
    matrix = r.validation_confusion_matrix
    assert set(matrix.labels) == {RENAME.get(label, label) for label in TRAIN_COUNTS}
    assert sum(sum(row.counts) for row in matrix.rows) == r.validation_examples
    assert [c.label for c in r.validation_per_class] == list(matrix.labels)
    assert [c.support for c in r.validation_per_class] == [sum(row.counts) for row in matrix.rows]
    correct = sum(row.counts[i] for i, row in enumerate(matrix.rows))
    assert correct / r.validation_examples == pytest.approx(r.validation_metrics["accuracy"])

    out_file = tmp_path / "report.html"
    code = main(["--target", server.target, "jobs", "report", job.id, "--out", str(out_file), "--dataset", test.id])
    _, err = capsys.readouterr()
    assert (code, err) == (0, "")
    page = out_file.read_text()
    parsed = parse_report(page)

    # NOTE: a real job fits a temperature on its validation rows, so its report has a calibration section too
    assert set(parsed.sections) == SECTIONS | {"test-evaluation", "calibration"} and parsed.links == []
    assert len(parsed.images) == 8   # 7, and the calibration section's reliability diagram
    for src in parsed.images:
        png_size(src)
    assert "script" not in parsed.tags and EVIL not in page and EVIL in parsed.text
    held_out = client.evaluate(done.model_id, test.id).report
    assert f"ECE {held_out.ece:.4f} (a perfectly calibrated model would show about {held_out.ece_if_calibrated:.4f}" \
        in parsed.text

    curve = table_with(parsed, "step")
    assert [row[0] for row in curve[1:]] == [str(p.step) for p in r.learning_curve] == ["8", "16"]
    assert [row[3] for row in curve[1:]] == [f"{p.validation_loss:.4f}" for p in r.learning_curve]
    confusion = [t for t in parsed.tables if t[0][0] == "true \\ predicted"][0]
    assert confusion == [["true \\ predicted", *matrix.labels],
                         *([label, *map(str, row.counts)] for label, row in zip(matrix.labels, matrix.rows, strict=True))]  # fmt: skip
    per_class = table_with(parsed, "label")
    assert per_class[1:] == [[c.label, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.support)]
                             for c in r.validation_per_class]  # fmt: skip
    baselines = table_with(parsed, "run")
    assert [row[:3] for row in baselines[1:]] == [
        ["fine-tuned", done.model_id, f"{r.validation_metrics['macro_f1']:.4f}"],
        *([b.kind, b.model_id, f"{b.validation_metrics['macro_f1']:.4f}"] for b in r.baselines),
    ]
    assert [row[0] for row in baselines[1:]] == ["fine-tuned", "frozen", "scratch"]

    # --dataset: Evaluate of the model beside both baselines, with McNemar's test
    evaluation = client.evaluate(done.model_id, test.id, compare=[b.model_id for b in r.baselines])
    compared = table_with(parsed, "compared model")
    assert [row[0] for row in compared[1:]] == [f"{b.model_id} v1" for b in r.baselines]
    assert [row[7] for row in compared[1:]] == [f"{c.p_value:.3g}" for c in evaluation.comparisons]
    assert f"{evaluation.report.macro_f1:.4f}" in parsed.text and f"{sum(TEST_COUNTS.values())} examples" in parsed.text
    assert r.fit.rule in parsed.text and r.transfer_verdict in parsed.text
    assert f"{r.parity_max_abs_diff:.3g}" in parsed.text

    # a baseline model deleted since: the report still comes, with the fine-tuned model's own test figures
    client.delete_model(r.baselines[0].model_id)
    code = main(["--target", server.target, "jobs", "report", job.id, "--out", str(out_file), "--dataset", test.id])
    assert (code, capsys.readouterr().err) == (0, "")
    parsed = parse_report(out_file.read_text())
    assert "test-evaluation" in parsed.sections and "could not be evaluated on" in parsed.text
    assert not [t for t in parsed.tables if t[0][0] == "compared model"]
