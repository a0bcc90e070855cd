"""The one error hierarchy of the server. Each error names its gRPC status code (as a string, so that core and engines
never import grpc); the mapping to the wire happens in one place (`tuneserve.grpc.interceptors`). Anything that is not a `TuneServeError` reaches clients as INTERNAL with a
generic message, and is logged with its traceback.

    TuneServeError
    ├── InvalidArgument      the request is wrong; the message says what to fix
    ├── NotFound             an id that does not exist
    ├── AlreadyExists
    ├── FailedPrecondition   the request is fine but the state is not (e.g. Predict on a model still training)
    ├── ResourceExhausted    a limit was reached (queue full, too many jobs, message too large)
    │   └── DiskFull         a write found no space left: on the data volume or in the metadata database
    ├── DeadlineExceeded     the caller's deadline passed before the work was done (the rest is dropped, not
    │                        computed), or an upload stream sent nothing for limits.upload_idle_timeout_seconds
    └── Unavailable          the server is shutting down or a dependency is down; retry later

`ConfigError` is not one of them: it is raised before the server serves (unreadable certificate, bad tokens file),
and `tuneserve serve` reports it as one line and exits.
"""

from __future__ import annotations


class TuneServeError(Exception):
    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TuneServeError):
    code = "INVALID_ARGUMENT"


class NotFound(TuneServeError):
    code = "NOT_FOUND"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class AlreadyExists(TuneServeError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(TuneServeError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(TuneServeError):
    code = "RESOURCE_EXHAUSTED"


class DiskFull(ResourceExhausted):
    """The message names the volume or database file that is full; the request may be retried once space is freed.
    Raised by the stores (`store.artifacts.map_disk_full`, the SQLite backend), never from a bare OSError elsewhere."""


class Unavailable(TuneServeError):
    code = "UNAVAILABLE"


class DeadlineExceeded(TuneServeError):
    code = "DEADLINE_EXCEEDED"


class ConfigError(Exception):
    """The server's configuration is unusable; the message names the setting and what to fix."""
