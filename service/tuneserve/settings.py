"""Typed settings. Every field can be set by environment variable with the `TUNESERVE_` prefix and `__` between a
section and its field (e.g. `TUNESERVE_SERVER__PORT=50051`, `TUNESERVE_TRAINING__MAX_CONCURRENT_JOBS=2`), or by the
flags of `tuneserve serve`. Settings are built once in `main()` and passed down through constructors; nothing reads
the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class ServerSettings(_Section):
    host: str = "[::]"
    """Interface the gRPC server binds."""
    port: int = 50051
    """gRPC port (tuneserve.v1 services, health, reflection). 0 picks a free port."""
    metrics_host: str = "0.0.0.0"
    """Interface the Prometheus endpoint binds. It has no TLS or authentication: bind an internal interface (e.g.
    127.0.0.1) to keep it off the public one."""
    metrics_port: int = 9090
    """Prometheus /metrics port; 0 picks a free port, -1 disables the endpoint."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message accepted or sent, both directions (gRPC's own default of 4 MiB rejects real batches)."""
    grace_seconds: float = 10.0
    """On SIGTERM: health turns NOT_SERVING, new RPCs are refused and in-flight ones get this long to finish."""
    max_concurrent_rpcs: int = 0
    """RPCs (streams included) handled at once; beyond it new RPCs are refused at once with RESOURCE_EXHAUSTED
    ("Concurrent RPC limit exceeded"), health checks too. 0 = no limit."""
    rpc_workers: int = 8
    """Threads for blocking work the event loop hands off (dataset parsing, SQLite, ONNX Runtime)."""


class StorageSettings(_Section):
    data_dir: Path = Path("./data")
    """Root of everything stored: the SQLite metadata (tuneserve.db), datasets/, models/, jobs/."""
    database_url: str = ""
    """Where the metadata lives. Empty: SQLite at data_dir/tuneserve.db. `sqlite:///RELATIVE/PATH` or
    `sqlite:////ABSOLUTE/PATH`: another SQLite file. `postgresql://USER:PASSWORD@HOST:PORT/DATABASE`: PostgreSQL, which
    several serving replicas share (give them one shared data_dir volume too). Checked at start-up: a bad or
    unreachable URL stops the server with one line; a later outage turns health NOT_SERVING until it reconnects."""
    database_pool_size: int = Field(default=4, ge=1)
    """PostgreSQL connections each server keeps open at most."""
    orphan_grace_seconds: float = Field(default=600.0, ge=0)
    """At start-up, dataset and model directories that no metadata record names (left by a crash between a publish
    and its record, or between a delete's record and its files) are removed and logged. With PostgreSQL, which other
    servers share, only those older than this: another server may have published one an instant ago and be writing
    its record. A server with its own SQLite database removes them all."""


class TrainingSettings(_Section):
    max_concurrent_jobs: int = 1
    """Fine-tunes running at once; further jobs wait QUEUED."""
    max_queued_jobs: int = 100
    """FineTune answers RESOURCE_EXHAUSTED when this many jobs are already waiting."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where workers train: auto = CUDA when torch sees a GPU, else CPU."""
    backbone_dirs: list[Path] = Field(default_factory=list)
    """Directories whose sub-directories may be used as local Hugging Face backbones (FineTune backbone=PATH).
    A path outside all of them is refused. data_dir/backbones is always allowed."""
    allow_hub: bool = False
    """Allow backbone names that are Hugging Face hub ids (needs network; off by default)."""
    cancel_grace_seconds: float = 25.0
    """After CancelJob, or on a server shutdown, the worker gets this long to stop cleanly before it is killed. On a
    shutdown it finishes its step and saves a checkpoint in that time (MiniLM on 2 loaded CPU cores: 12 s, 272 MB);
    the job goes back to QUEUED and resumes from it after the restart. Both happen while in-flight RPCs finish
    (server.grace_seconds): keep the pod's terminationGracePeriodSeconds above the larger of the two."""
    max_restarts: int = Field(default=0, ge=0)
    """Times a job's worker is started again when it dies without reporting an error (killed, e.g. by the OOM killer;
    crashed; preempted) or its server stopped without a shutdown (SIGKILL, a lost node). Each restart resumes from the
    job's last checkpoint (one per evaluation). 0 = such a job ends FAILED with the reason. A reported error (bad data,
    failed export parity) never restarts: it would fail again."""
    store_retry_seconds: float = Field(default=2.0, gt=0)
    """While the metadata database takes no writes (its disk is full, PostgreSQL is unreachable), a job's start and
    end are tried again this often: the job waits (its progress events meanwhile are lost) and is recorded this long at
    most after the writes go through again. Later jobs run after it."""
    worker_threads: int = 0
    """torch threads per training worker; 0 = the CPUs available to the container. With several processes per job
    they share them (threads // processes each, at least 1)."""
    runner: Literal["local", "kubernetes"] = "local"
    """Where fine-tunes run: local = worker processes on the server's machine; kubernetes = one Kubernetes Job per
    fine-tune (and per baseline), configured in the kubernetes section (needs the [kubernetes] extra and RBAC)."""
    processes_per_job: int = Field(default=1, ge=1)
    """Training processes per fine-tune (per node with the kubernetes runner). 1 = one plain worker process; more =
    the worker under torchrun --nproc_per_node=N: DDP through the Trainer (gloo on CPU; nccl and one GPU per process
    on GPU), each process taking batch_size rows per step, so a step sees N x batch_size rows."""
    max_search_trials: int = Field(default=50, ge=1)
    """Largest FineTune(search=N): the trials one job may run (INVALID_ARGUMENT above it)."""
    default_search_budget_seconds: float = Field(default=3600.0, gt=0)
    """The wall-time budget of a search whose request leaves search_budget_seconds at 0. No trial starts past it, and
    the trial running when it ends is stopped there (its best checkpoint so far counts)."""
    nodes_per_job: int = Field(default=1, ge=1)
    """Nodes (pods) per fine-tune with the kubernetes runner: an Indexed Job of this many pods rendezvousing through
    a headless Service (the data volume must then be ReadWriteMany). The local runner needs 1."""


class RecommendSettings(_Section):
    default_time_budget_seconds: float = 300.0
    """RecommendBackbone's time budget when the request leaves time_budget_seconds at 0."""
    max_time_budget_seconds: float = 1800.0
    """Largest time_budget_seconds a RecommendBackbone request may ask for."""
    default_examples: int = 1000
    """Rows of the stratified dataset sample each candidate embeds when the request leaves max_examples at 0."""
    max_examples: int = 10000
    """Largest max_examples a RecommendBackbone request may ask for."""
    max_candidates: int = 8
    """Most backbones one RecommendBackbone request may rank."""
    linear_probe: bool = True
    """Also report a cross-validated logistic-regression probe accuracy beside each LogME score (the ranking always
    follows LogME)."""


class InferenceSettings(_Section):
    intra_op_threads: int = 0
    """ONNX Runtime intra-op threads per session; 0 = the CPUs available to the container (cgroup quota)."""
    intra_op_spinning: bool = True
    """ONNX Runtime's intra-op threads busy-wait for the next piece of work after each run (ONNX Runtime's default)
    instead of sleeping: a little lower latency while cores are idle, at the cost of CPU time that a training job,
    tokenization or another model's session could use. Turn it off when the CPUs are shared (bench/RESULTS.md)."""
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    """ONNX Runtime execution providers in order of preference; those not available are skipped."""
    max_loaded_models: int = 8
    """ONNX Runtime sessions kept open (each variant of a version counts); the least recently used is closed beyond
    this, once the requests using it have finished."""
    max_loaded_bytes: int = 0
    """Memory cap of the open sessions, estimated from their ONNX files' size; the least recently used are closed
    beyond it. 0 = no cap (max_loaded_models still applies)."""


class BatchingSettings(_Section):
    max_batch_size: int = 32
    """Most texts in one ONNX Runtime run; requests (Predict, PredictStream, Evaluate) of one model version and
    variant are merged up to this, and a larger request is split across runs."""
    max_queue_delay_ms: float = 0.0
    """How long the oldest waiting text may wait for a fuller batch. 0 = run at once: under load, batches still form
    from the requests that arrive while the previous batch runs, and an idle server adds no latency."""
    max_queue_size: int = 1024
    """Texts waiting per model version and variant; a request that would exceed it gets RESOURCE_EXHAUSTED."""
    max_batch_tokens: int = 8192
    """Token budget of one run: texts are grouped by token length and padded to the longest in their batch, and
    batch size x longest stays within this (a single text longer than it runs alone)."""


class LimitSettings(_Section):
    max_dataset_bytes: int = 512 * 1024 * 1024
    """Largest dataset file UploadDataset accepts."""
    upload_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    """UploadDataset waits this long at most for the stream's next message (the metadata, then each chunk); a stream
    silent for longer is ended with DEADLINE_EXCEEDED and what it sent is removed."""
    max_concurrent_uploads: int = Field(default=16, ge=1)
    """UploadDataset streams received (then validated and stored) at once per server; one more is refused with
    RESOURCE_EXHAUSTED after its metadata."""
    max_upload_temp_bytes: int = Field(default=4 * 1024 * 1024 * 1024, ge=1)
    """Bytes the uploads in progress may hold in temp files (data_dir/tmp) together; the chunk that would exceed it
    ends its upload with RESOURCE_EXHAUSTED (and removes what it sent). Keep it above max_dataset_bytes, or a dataset
    of that size can never be uploaded."""
    max_dataset_rows: int = 1_000_000
    """Most rows in one dataset. A zip's central directory may list this many entries plus twice (max_labels + 1)
    (room for the class folders, a top folder and macOS's `__MACOSX/` copies); a zip that lists more is refused from
    its end record, before its directory is parsed."""
    max_line_bytes: int = 16 * 1024 * 1024
    """Longest line of a CSV or JSONL dataset file, in bytes. A line is read up to this much, so a longer one is
    refused (naming the line) without being held whole. A JSONL image row holds its image base64-encoded (4/3 of the
    file's size): raise this for images over about 12 MiB, or upload them as a zip of class folders."""
    max_labels: int = 1000
    """Most distinct labels in one dataset (token classification: entity types)."""
    max_sentence_tokens: int = Field(default=10_000, ge=1)
    """Token classification uploads: most tokens in one sentence (a CoNLL file missing its blank lines is refused at
    the first sentence past this, naming the line). Sentences count against max_dataset_rows."""
    max_text_chars: int = 100_000
    """Longest single text in a dataset row or a Predict request (texts are then truncated to the model's
    max_seq_length tokens)."""
    max_chars_per_token: int = Field(default=32, ge=1)
    """Predict, the Open Inference Protocol and Evaluate cut each text to this many characters per token of the
    model's max_seq_length (32 x 128 = 4096 characters) before tokenizing it, so a long text costs what the model
    reads, not its length (a tokenizer's truncation still tokenizes the whole text). Generous: English averages 4-6
    characters per token; only texts averaging more (words of dozens of letters) are read shorter than truncation
    alone would read them."""
    max_image_pixels: int = 25_000_000
    """Largest image (width x height) accepted in a dataset, Predict or the Open Inference Protocol; checked from the
    header before decoding, so a decompression bomb is refused without allocating it."""
    max_predict_batch: int = 256
    """Most texts (or images, for an image model) in one Predict request or Open Inference Protocol ModelInfer."""
    max_name_chars: int = 256
    """Longest name or id in a request (every string field of a tuneserve.v1 request except Predict texts: ids,
    names, aliases, backbone, columns, page tokens) and longest label in a dataset; longer -> INVALID_ARGUMENT."""


class SecuritySettings(_Section):
    tls_cert_file: Path | None = None
    """PEM certificate (chain) the gRPC port presents; with tls_key_file the port speaks TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: Path | None = None
    """PEM CA certificate(s) for mutual TLS: when set, every client must present a certificate they signed."""
    tokens: dict[str, str] = Field(default_factory=dict)
    """Bearer tokens and their roles as a JSON object, {"TOKEN": "admin", "OTHER": "predict"}; clients send
    `authorization: Bearer TOKEN`. admin may call every RPC; predict only inference (PredictionService, the Open
    Inference Protocol) and GetModel, ListModels, ListBackbones. Health and reflection stay open. No tokens here or
    in tokens_file: authentication is off (a warning is logged)."""
    tokens_file: Path | None = None
    """A JSON or YAML file mapping more tokens to roles, read at start-up (e.g. a mounted Kubernetes Secret)."""


class KubernetesSettings(_Section):
    """The Jobs of `training.runner = kubernetes` (docs/operations/deployment.md, "Scale-out training")."""

    namespace: str = ""
    """Namespace of the training Jobs; empty = the server pod's own namespace."""
    image: str = ""
    """Image of the training pods, normally the server's own (e.g. registry/tuneserve:0.1.0, -gpu for GPU Jobs);
    required with the kubernetes runner."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """imagePullPolicy of the training pods."""
    data_claim_name: str = "tuneserve-data"
    """The PersistentVolumeClaim the server mounts at storage.data_dir; training pods mount it at the same path (specs
    and artifacts use absolute paths). ReadWriteMany unless every training pod can share the server's node."""
    gpu: bool = False
    """GPU Jobs: each pod requests processes_per_job nvidia.com/gpu (one per process, nccl) and tolerates the
    nvidia.com/gpu taint; set training.device = cuda with it."""
    cpu: str = "2"
    """CPU request = limit of each training pod (Kubernetes quantity)."""
    memory: str = "8Gi"
    """Memory request = limit of each training pod; a pod that exceeds it is OOMKilled and the job FAILED says so."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """nodeSelector of the training pods (e.g. a GPU node pool)."""
    ttl_seconds_after_finished: int = 3600
    """Kubernetes deletes a finished training Job (and its pods and logs) this long after it ends."""
    active_deadline_seconds: int = 86400
    """A training Job still running after this long is stopped by Kubernetes and the job FAILED (deadline)."""
    rendezvous_port: int = 29500
    """torchrun's rendezvous port on the rank-0 pod of a multi-node Job."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TUNESERVE_", env_nested_delimiter="__", extra="ignore", use_attribute_docstrings=True
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    log_level: str = "INFO"
    """Python logging level of the server."""
