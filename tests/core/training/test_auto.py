"""The auto rules on synthetic dataset shapes: what a small imbalanced set, a mid-sized balanced one and a large one
get, and that a caller's value always wins and feeds the rules that depend on it."""

from __future__ import annotations

from tuneserve.core.training import auto
from tuneserve.core.training.auto import AUTO_SEQ_LENGTH, DataShape, choose, seq_length_from


def test_small_imbalanced_set_gets_many_epochs_small_batches_and_class_weights() -> None:
    shape = DataShape(rows=600, label_counts={"a": 400, "b": 150, "c": 50})
    chosen = choose(shape, {})
    # 480 training rows / 16 = 30 steps an epoch: 300 steps would take 10 epochs; under 1,000 training rows: refit
    assert chosen.values == {
        "epochs": 10, "batch_size": 16, "validation_fraction": 0.2, "eval_steps": 0, "early_stopping_patience": 2,
        "class_weighting": True, "max_seq_length": AUTO_SEQ_LENGTH, "refit": "true",
    }
    assert chosen.fields == list(chosen.values)


def test_mid_sized_balanced_set() -> None:
    chosen = choose(DataShape(rows=1500, label_counts={"a": 500, "b": 500, "c": 500}), {})
    # 1200 training rows / 16 = 75 steps an epoch -> 4 epochs; balanced: no weights
    assert chosen.values["epochs"] == 4
    assert chosen.values["class_weighting"] is False


def test_large_set_gets_big_batches_sub_epoch_evaluation_and_a_smaller_validation_share() -> None:
    chosen = choose(DataShape(rows=50_000, label_counts={"a": 25_000, "b": 25_000}), {})
    assert chosen.values["validation_fraction"] == 0.1
    assert chosen.values["batch_size"] == 32
    assert chosen.values["epochs"] == 3
    assert chosen.values["eval_steps"] == 1407 // 4          # ceil(45,000 / 32) steps an epoch, 4 evaluations
    assert chosen.values["early_stopping_patience"] == 3


def test_a_rare_class_raises_the_validation_fraction_so_it_keeps_two_rows() -> None:
    chosen = choose(DataShape(rows=1000, label_counts={"a": 995, "b": 5}), {})
    assert chosen.values["validation_fraction"] == 0.4


def test_caller_values_win_and_feed_the_dependent_rules() -> None:
    chosen = choose(DataShape(rows=600, label_counts={"a": 300, "b": 300}), {"batch_size": 64, "epochs": 2})
    assert "epochs" not in chosen.values and "batch_size" not in chosen.values
    assert chosen.values["eval_steps"] == 0
    with_steps = choose(DataShape(rows=600), {"max_steps": 50})
    assert "epochs" not in with_steps.values


def test_validation_dataset_means_no_fraction_and_every_row_trains() -> None:
    chosen = choose(DataShape(rows=3000, label_counts={"a": 1500, "b": 1500}, validation_rows=500), {})
    assert "validation_fraction" not in chosen.values
    assert chosen.values["batch_size"] == 32                   # 3000 training rows


def test_task_rules() -> None:
    assert choose(DataShape(rows=800, task="regression"), {}).values["class_weighting"] is False
    assert choose(DataShape(rows=800, task="multi_label", label_counts={"a": 700, "b": 700}), {}).values[
        "class_weighting"] is True


def test_seq_length_from_token_lengths() -> None:
    assert seq_length_from(list(range(1, 101)), 512) == 112     # p99 = 99 -> 112
    assert seq_length_from(list(range(1, 1001)), 2048) == 992   # p99 = 990 -> 992: 1 text in 100 is cut
    assert seq_length_from([5] * 50, 512) == 32                 # at least 32
    assert seq_length_from([1000] * 10, 256) == 256             # at most the backbone's limit
    assert seq_length_from([], 512) == 128


def test_refit_follows_the_training_rows_and_auto_means_unset() -> None:
    assert auto.REFIT_MAX_TRAIN_ROWS == 1000  # bench/RESULTS.md: it helped at 360 and 800 training rows, not at 1,600
    # 1,200 rows split 0.2: 960 training rows refit; 1,500: 1,200 do not
    assert choose(DataShape(rows=1200), {}).values["refit"] == "true"
    assert choose(DataShape(rows=1500), {}).values["refit"] == "false"
    assert choose(DataShape(rows=900, validation_rows=5000), {}).values["refit"] == "true"  # a validation set: all 900
    assert choose(DataShape(rows=1200), {"refit": "auto"}).values["refit"] == "true"
    assert "refit" not in choose(DataShape(rows=1200), {"refit": "false"}).values
    assert choose(DataShape(rows=1200), {}).fields[-1] == "refit"
