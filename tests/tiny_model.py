"""Train a tiny text model (2-layer, hidden-32 random-init BERT with MiniLM's tokenizer, a few steps on synthetic
topics) into a fresh data directory, through a real `tuneserve serve` process; prints its model id.

    python bench/tiny_model.py --data-dir /tmp/tiny/data

For benchmarks of the serving path itself (protocol, batching, transport) where the model's compute should be small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # NOTE: the test fixtures build the tiny backbone

from tests.fixtures import build_tiny_bert, write_text_dataset
from tuneserve_client import Client, JobState

COUNTS = {"sport": 40, "politics": 24, "tech": 12}
STEPS = {"max_steps": 24, "batch_size": 8, "eval_steps": 8, "max_seq_length": 32, "learning_rate": 1e-3,
         "head_learning_rate": 3e-3, "early_stopping_patience": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    root = args.data_dir.resolve().parent
    backbone = build_tiny_bert(root / "backbones" / "tiny-bert")
    train = write_text_dataset(root / "train.jsonl", COUNTS, seed=1)
    env = {"TUNESERVE_TRAINING__BACKBONE_DIRS": f'["{backbone.parent}"]'}
    with server(args.data_dir, env=env) as target, Client(target, timeout=60) as client:
        dataset = client.upload_dataset(train)
        job = client.fine_tune(dataset.id, backbone=str(backbone), model_name="tiny", hyperparameters=STEPS)
        done = client.wait_for_job(job.id, timeout=600)
        if done.state != JobState.JOB_STATE_SUCCEEDED:
            raise SystemExit(f"fine-tune failed: {done.error}")
    print(job.model_id)


if __name__ == "__main__":
    main()
