"""Train a tiny text model (2-layer, hidden-32 random-init BERT with MiniLM's tokenizer, a few steps on synthetic
topics) into a fresh data directory, through a real `tuneserve serve` process; prints its model id.

    python -m tests.tiny_model --data-dir /tmp/tiny/data        # from the repository root

For benchmarks of the serving path itself (protocol, batching, transport) where the model's compute should be small:
bench/perf_analyzer.sh runs this, bench/soak.py (and so tests/integration/test_soak.py) uses `fine_tune_tiny`.
The server's log is written beside the data directory (`server-1.log`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.fixtures import build_tiny_bert, write_text_dataset
from tests.integration.server_process import ServerProcess
from tuneserve_client import Client, JobState

# Imbalanced on purpose, as tests/integration/conftest.py's TRAIN_COUNTS.
COUNTS = {"sport": 40, "politics": 24, "tech": 12}
# A few steps of the tiny model: seconds on 2 CPUs (no refit, as tests/integration/conftest.py's QUICK).
STEPS = {"max_steps": 24, "batch_size": 8, "eval_steps": 8, "max_seq_length": 32, "learning_rate": 1e-3,
         "head_learning_rate": 3e-3, "early_stopping_patience": 0, "refit": "false"}


def fine_tune_tiny(target: str, train_file: Path, backbone: Path, model_name: str = "tiny") -> tuple[str, str]:
    """Upload `train_file` and fine-tune the tiny backbone on it (STEPS) on the server at `target`: (model id,
    dataset id). The server must list `backbone`'s parent among its backbone directories."""
    with Client(target, timeout=60) as client:
        dataset = client.upload_dataset(train_file)
        job = client.fine_tune(dataset.id, backbone=str(backbone), model_name=model_name, hyperparameters=STEPS)
        done = client.wait_for_job(job.id, timeout=600)
        if done.state != JobState.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"fine-tune failed: {done.error}")
        return done.model_id, dataset.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    root = data_dir.parent
    backbone = build_tiny_bert(root / "backbones" / "tiny-bert")
    train = write_text_dataset(root / "train.jsonl", COUNTS, seed=1)
    server = ServerProcess(data_dir, backbone.parent).start()
    try:
        model_id, _ = fine_tune_tiny(server.target, train, backbone)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    finally:
        server.stop()
    print(model_id)


if __name__ == "__main__":
    main()
