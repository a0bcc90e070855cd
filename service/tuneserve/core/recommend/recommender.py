"""RecommendBackbone: rank candidate backbones for a dataset by a transferability estimate from frozen features
(LogME), within a time budget, without fine-tuning any of them.

The dataset is sampled once (stratified, at most max_examples rows); then each candidate in turn gets one feature
worker process (`python -m tuneserve.engines.recommend.worker`, see that module for the contract) that embeds the sample
and scores it. The candidates share one deadline: a worker still running when it passes is killed and its candidate
reported as budget_exhausted, and the candidates after it are not started. One recommendation runs at a time (they
use every CPU the workers get); another request meanwhile is answered RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import os
import random
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.cpus import available_cpus
from tuneserve.engines.backbones import list_backbones, resolve_backbone
from tuneserve.engines.recommend.worker import FeatureSpec
from tuneserve.engines.training.spec import BackboneRef
from tuneserve.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from tuneserve.settings import Settings
from tuneserve.store import ArtifactStore
from tuneserve.tasks import get_task
from tuneserve.types import DatasetRecord

log = logging.getLogger(__name__)

METHOD = "logme"
DEFAULT_MAX_SEQ_LENGTH = 128
MAX_SEQ_LENGTH = 512
# NOTE: kept back from the caller's own deadline, so the answer (with every candidate's status) still reaches it
_DEADLINE_MARGIN_SECONDS = 2.0
_SEED = 0


class CandidateStatus(enum.Enum):
    SCORED = "scored"
    BUDGET_EXHAUSTED = "budget_exhausted"
    INCOMPATIBLE = "incompatible"
    NOT_INSTALLED = "not_installed"
    FAILED = "failed"


@dataclass(frozen=True)
class RecommendParams:
    dataset_id: str
    backbones: tuple[str, ...] = ()       # empty: every catalog backbone of the dataset's modality
    max_examples: int = 0                 # 0: settings.recommend.default_examples
    time_budget_seconds: float = 0.0      # 0: settings.recommend.default_time_budget_seconds
    max_seq_length: int = 0               # 0: DEFAULT_MAX_SEQ_LENGTH


@dataclass
class CandidateScore:
    backbone: str
    modality: str
    status: CandidateStatus
    reason: str = ""
    score: float | None = None            # LogME, set when scored
    probe_accuracy: float | None = None
    examples: int = 0
    feature_dim: int = 0
    seconds: float = 0.0
    rank: int = 0                         # 1 = best; 0 = not scored


@dataclass
class Recommendation:
    dataset_id: str
    examples: int
    time_budget_seconds: float
    seconds_total: float = 0.0
    method: str = METHOD
    ranking: list[CandidateScore] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    name: str
    modality: str
    ref: BackboneRef | None               # None: not scorable, `skip` says why
    skip: tuple[CandidateStatus, str] | None = None


class Recommender:
    def __init__(self, settings: Settings, datasets: DatasetManager, artifacts: ArtifactStore) -> None:
        self._settings = settings.recommend
        self._training = settings.training
        self._backbone_dirs = [*settings.training.backbone_dirs, settings.storage.data_dir / "backbones"]
        self._datasets = datasets
        self._artifacts = artifacts
        self._busy = asyncio.Lock()

    async def recommend(self, params: RecommendParams, time_remaining: float | None = None) -> Recommendation:
        """Rank the candidates; `time_remaining` is the caller's deadline in seconds (None: none), which caps the
        budget so that the answer arrives before it."""
        budget = self._budget(params.time_budget_seconds, time_remaining)
        max_examples = self._max_examples(params.max_examples)
        max_seq_length = _max_seq_length(params.max_seq_length)
        if not params.dataset_id:
            raise InvalidArgument("dataset_id is required")
        dataset = await self._datasets.get(params.dataset_id)
        if get_task(dataset.task).stratified and max_examples < 2 * len(dataset.labels):
            raise InvalidArgument(
                f"max_examples {max_examples} is too small for {len(dataset.labels)} labels: LogME needs at least "
                f"2 examples per label, i.e. max_examples >= {2 * len(dataset.labels)}"
            )
        candidates = self._candidates(params.backbones, dataset.modality)
        if self._training.max_concurrent_jobs == 0:
            raise FailedPrecondition(
                "this server runs no worker processes (training.max_concurrent_jobs is 0), so it cannot embed the "
                "dataset; ask a server that trains"
            )
        if self._busy.locked():
            raise ResourceExhausted("a backbone recommendation is already running; retry when it has finished")
        async with self._busy:
            return await self._run(dataset, candidates, budget, max_examples, max_seq_length)

    # -- validation ---------------------------------------------------------------------------------------------------

    def _budget(self, requested: float, time_remaining: float | None) -> float:
        cap = self._settings.max_time_budget_seconds
        if math.isnan(requested) or requested < 0 or requested > cap:
            raise InvalidArgument(
                f"time_budget_seconds must be in (0, {cap:g}] (limit recommend.max_time_budget_seconds), or 0 for "
                f"the default {self._settings.default_time_budget_seconds:g}; got {requested:g}"
            )
        budget = requested or self._settings.default_time_budget_seconds
        if time_remaining is not None:
            budget = min(budget, max(time_remaining - _DEADLINE_MARGIN_SECONDS, 0.0))
        return budget

    def _max_examples(self, requested: int) -> int:
        cap = self._settings.max_examples
        if requested < 0 or requested > cap:
            raise InvalidArgument(
                f"max_examples must be in [1, {cap}] (limit recommend.max_examples), or 0 for the default "
                f"{self._settings.default_examples}; got {requested}"
            )
        return requested or self._settings.default_examples

    def _candidates(self, names: Sequence[str], modality: str) -> list[_Candidate]:
        names = [name.strip() for name in names]  # NOTE: before the duplicate check: " minilm-l6" is minilm-l6
        if len(names) > self._settings.max_candidates:
            raise InvalidArgument(
                f"{len(names)} backbones requested, at most {self._settings.max_candidates} may be ranked at once "
                "(limit recommend.max_candidates)"
            )
        if len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise InvalidArgument(f"backbones lists {', '.join(map(repr, repeated))} more than once")
        if not names:
            names = [b.name for b in list_backbones() if b.modality == modality]
            if not names:
                raise FailedPrecondition(f"this server's catalog has no {modality} backbone to recommend")
        return [self._candidate(name, modality) for name in names]

    def _candidate(self, name: str, modality: str) -> _Candidate:
        if not name:
            raise InvalidArgument("backbones holds an empty name; name each candidate (see ListBackbones)")
        try:
            ref = resolve_backbone(name, allowed_dirs=self._backbone_dirs, allow_hub=self._training.allow_hub)
        except FailedPrecondition as exc:  # a catalog backbone whose package is not installed
            return _Candidate(name, modality, None, (CandidateStatus.NOT_INSTALLED, exc.message))
        if ref.modality != modality:
            reason = f"a {ref.modality} backbone cannot embed this {modality} dataset"
            return _Candidate(name, ref.modality, None, (CandidateStatus.INCOMPATIBLE, reason))
        return _Candidate(name, ref.modality, ref)

    # -- the run ------------------------------------------------------------------------------------------------------

    async def _run(
        self, dataset: DatasetRecord, candidates: list[_Candidate], budget: float, max_examples: int,
        max_seq_length: int,
    ) -> Recommendation:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + budget
        work_dir = self._artifacts.temp_dir()
        try:
            rows = await asyncio.to_thread(self._write_sample, dataset, work_dir / "sample.jsonl", max_examples)
            result = Recommendation(dataset_id=dataset.id, examples=rows, time_budget_seconds=round(budget, 3))
            for index, candidate in enumerate(candidates):
                if candidate.ref is None:
                    assert candidate.skip is not None
                    status, reason = candidate.skip
                    result.ranking.append(CandidateScore(candidate.name, candidate.modality, status, reason))
                    continue
                spec = FeatureSpec(
                    backbone=candidate.ref, rows_path=str(work_dir / "sample.jsonl"), labels=dataset.labels,
                    task=dataset.task, text_pairs=dataset.text_pairs,
                    max_seq_length=max_seq_length, device=self._training.device,
                    threads=self._training.worker_threads or available_cpus(), probe=self._settings.linear_probe,
                )
                result.ranking.append(await self._score(candidate, spec, work_dir / str(index), deadline, budget))
        finally:
            self._artifacts.remove(work_dir)
        result.seconds_total = round(loop.time() - started, 3)
        _rank(result.ranking)
        return result

    def _write_sample(self, dataset: DatasetRecord, path: Path, max_examples: int) -> int:
        rows_path = self._datasets.rows_path(dataset.id)
        with open(rows_path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        task = get_task(dataset.task)
        if task.stratified:
            sample = stratified_sample(rows, max_examples, seed=_SEED)
        else:  # NOTE: multi-label and regression rows have no single label to keep the shares of
            sample = random.Random(_SEED).sample(rows, min(max_examples, len(rows)))
        with open(path, "w", encoding="utf-8") as out:
            for row in sample:
                if "image" in row:  # NOTE: image rows name their file relative to the dataset's data.jsonl
                    row = {**row, "image": str(rows_path.parent / row["image"])}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return len(sample)

    async def _score(
        self, candidate: _Candidate, spec: FeatureSpec, work_dir: Path, deadline: float, budget: float
    ) -> CandidateScore:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        score = CandidateScore(candidate.name, candidate.modality, CandidateStatus.BUDGET_EXHAUSTED)
        if remaining <= 0:
            score.reason = f"the time budget of {budget:g} s was spent before this backbone's turn"
            return score
        work_dir.mkdir()
        (work_dir / "spec.json").write_text(spec.to_json())
        started = loop.time()
        outcome = await _run_worker(work_dir / "spec.json", work_dir / "worker.log", remaining)
        score.seconds = round(loop.time() - started, 3)
        if outcome is None:
            score.reason = (
                f"feature extraction did not finish in the {remaining:.1f} s left of the {budget:g} s budget; "
                "a larger time_budget_seconds or a smaller max_examples lets it finish"
            )
        elif outcome.get("kind") == "result":
            score.status = CandidateStatus.SCORED
            score.score = float(outcome["logme"])
            score.probe_accuracy = outcome.get("probe_accuracy")
            score.examples = int(outcome["examples"])
            score.feature_dim = int(outcome["feature_dim"])
        else:
            score.status = CandidateStatus.FAILED
            score.reason = str(outcome.get("reason", "the feature worker failed"))
            log.warning("recommendation: backbone %s failed: %s", candidate.name, score.reason)
        return score


def stratified_sample(rows: list[dict[str, Any]], max_examples: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """At most `max_examples` rows (all of them if there are no more), each label keeping its share of the dataset
    (largest remainders round up) and at least 2 rows where it has them; seeded, so a rerun samples the same rows."""
    if len(rows) <= max_examples:
        return list(rows)
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    shares = {label: max_examples * len(group) / len(rows) for label, group in by_label.items()}
    quotas = {label: min(len(by_label[label]), max(2, math.floor(share))) for label, share in shares.items()}
    by_remainder = sorted(shares, key=lambda label: (shares[label] - math.floor(shares[label]), label), reverse=True)
    for label in by_remainder:
        if sum(quotas.values()) >= max_examples:
            break
        if quotas[label] < len(by_label[label]):
            quotas[label] += 1
    while sum(quotas.values()) > max_examples:  # NOTE: the 2-row minimums of rare labels come out of the largest
        largest = max(quotas, key=lambda label: quotas[label])
        quotas[largest] -= 1
    rng = random.Random(seed)
    sample = [row for label in sorted(by_label) for row in rng.sample(by_label[label], quotas[label])]
    rng.shuffle(sample)
    return sample


def _max_seq_length(requested: int) -> int:
    if requested < 0 or requested > MAX_SEQ_LENGTH:
        raise InvalidArgument(
            f"max_seq_length must be in [1, {MAX_SEQ_LENGTH}], or 0 for {DEFAULT_MAX_SEQ_LENGTH}; got {requested}"
        )
    return requested or DEFAULT_MAX_SEQ_LENGTH


def _rank(ranking: list[CandidateScore]) -> None:
    """Scored candidates first, best LogME first (rank 1, 2, ...); the others after them in request order."""
    scored = sorted((c for c in ranking if c.score is not None), key=lambda c: c.score or 0.0, reverse=True)
    for rank, candidate in enumerate(scored, start=1):
        candidate.rank = rank
    ranking[:] = scored + [c for c in ranking if c.score is None]


async def _run_worker(spec_path: Path, log_path: Path, timeout: float) -> dict[str, Any] | None:
    """The worker's last JSON line ({"kind": "result" | "failed", ...}); None when it ran out of time (killed)."""
    with open(log_path, "ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tuneserve.engines.recommend.worker", str(spec_path),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # NOTE: its own process group, so the kill reaches any children too
        )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        _killpg(proc.pid)
        await proc.wait()
        return None
    except BaseException:  # the RPC was cancelled or the server is stopping
        _killpg(proc.pid)
        raise
    for line in reversed(stdout.decode("utf-8", errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("kind") in ("result", "failed"):
                return event
    return {"kind": "failed", "reason": f"feature worker exited with code {proc.returncode}; {_tail(log_path)}"}


def _tail(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"last log line: {lines[-1][:300]}"
    return "no log output"


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
