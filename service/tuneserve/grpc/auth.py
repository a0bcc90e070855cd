"""Bearer-token authentication and role-based access, for every RPC, in one interceptor.

Clients send `authorization: Bearer TOKEN` metadata; `TUNESERVE_SECURITY__TOKENS` and `security.tokens_file` map
each token to a role:

    admin     every RPC
    predict   inference (PredictionService, the Open Inference Protocol except repository load/unload) and the
              read-only GetModel, ListModels, ListBackbones
    (open)    grpc.health.v1.Health and reflection: probes and grpcurl need no token

`REQUIRED_ROLE` is the one table from full method names (taken from the generated descriptors) to the role a call
needs; a method missing from it needs admin. A missing or unknown token is answered UNAUTHENTICATED, a role that may
not call the method PERMISSION_DENIED. With no tokens configured authentication is off and the server logs a warning.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

import grpc
import yaml
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tuneserve.errors import ConfigError
from tuneserve.grpc.handlers import Behavior, wrap_handler
from tuneserve.metrics import Metrics
from tuneserve.settings import SecuritySettings
from tuneserve_client.proto.inference import grpc_service_pb2
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2, models_pb2, prediction_pb2, training_pb2

log = logging.getLogger(__name__)

ADMIN = "admin"
PREDICT = "predict"
OPEN = "open"
ROLES = (ADMIN, PREDICT)
MIN_TOKEN_CHARS = 16
# the roles that may call a method needing the key's role
_GRANTED_BY = {PREDICT: {ADMIN, PREDICT}, ADMIN: {ADMIN}}


def _rpcs(proto: ModuleType, service: str, names: Sequence[str] = ()) -> list[str]:
    """Full method names (`/package.Service/Method`) of a service: all of them, or `names` (KeyError if one is gone)."""
    descriptor = proto.DESCRIPTOR.services_by_name[service]
    methods = [descriptor.methods_by_name[name] for name in names] if names else list(descriptor.methods)
    return [f"/{descriptor.full_name}/{method.name}" for method in methods]


_INFERENCE = (grpc_service_pb2, "GRPCInferenceService")
# NOTE: later entries override earlier ones: each service defaults to admin, then the exceptions follow.
REQUIRED_ROLE: dict[str, str] = {
    **dict.fromkeys(_rpcs(datasets_pb2, "DatasetService"), ADMIN),
    **dict.fromkeys(_rpcs(training_pb2, "TrainingService"), ADMIN),
    # NOTE: RecommendBackbone runs feature workers for minutes: admin, like FineTune (listed for the reader)
    **dict.fromkeys(_rpcs(training_pb2, "TrainingService", ["RecommendBackbone"]), ADMIN),
    **dict.fromkeys(_rpcs(models_pb2, "ModelService"), ADMIN),
    **dict.fromkeys(_rpcs(training_pb2, "TrainingService", ["ListBackbones"]), PREDICT),
    **dict.fromkeys(_rpcs(models_pb2, "ModelService", ["GetModel", "ListModels"]), PREDICT),
    **dict.fromkeys(_rpcs(prediction_pb2, "PredictionService"), PREDICT),
    **dict.fromkeys(_rpcs(*_INFERENCE), PREDICT),
    **dict.fromkeys(_rpcs(*_INFERENCE, ["RepositoryModelLoad", "RepositoryModelUnload"]), ADMIN),
    **dict.fromkeys(_rpcs(health_pb2, "Health"), OPEN),
    **dict.fromkeys(_rpcs(reflection_pb2, "ServerReflection"), OPEN),
}


def required_role(method: str) -> str:
    return REQUIRED_ROLE.get(method, ADMIN)  # NOTE: deny by default: an RPC added later needs admin until listed


# -- configuration -------------------------------------------------------------------------------------------------

def load_tokens(security: SecuritySettings) -> dict[str, str]:
    """token -> role from `security.tokens` and `security.tokens_file`; raises ConfigError (never naming a token)."""
    tokens = _checked(security.tokens.items(), "TUNESERVE_SECURITY__TOKENS")
    if security.tokens_file is not None:
        source = f"security.tokens_file {security.tokens_file}"
        tokens.update(_checked(_read_tokens_file(security.tokens_file).items(), source))
    return tokens


def interceptors(tokens: dict[str, str], metrics: Metrics) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """The auth interceptor for `load_tokens`' tokens, or none (and a warning) when there is no token."""
    if not tokens:
        log.warning(
            "authentication is off: every caller may call every RPC; set TUNESERVE_SECURITY__TOKENS or "
            "TUNESERVE_SECURITY__TOKENS_FILE to require bearer tokens"
        )
        return []
    return [AuthInterceptor(tokens, metrics)]


def _read_tokens_file(path: Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"security.tokens_file {path}: cannot read it ({_reason(exc)})") from None
    # NOTE: parser messages can quote the offending line, i.e. a token: report only where the error is.
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"security.tokens_file {path}: not valid JSON (line {exc.lineno})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"security.tokens_file {path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f'security.tokens_file {path}: expected a mapping of token to role, e.g. {{"TOKEN": "admin"}}'
        )
    return data


def _checked(items: Iterable[tuple[Any, Any]], source: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for number, (token, role) in enumerate(items, start=1):
        where = f"{source}: token #{number}"
        if role not in ROLES:
            raise ConfigError(f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where} is shorter than {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")
        # NOTE: gRPC metadata values are printable ASCII; a token that cannot be sent could never match.
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise ConfigError(f"{where} must be printable ASCII without spaces")
        tokens[token] = role
    return tokens


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


# -- the interceptor -----------------------------------------------------------------------------------------------

Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]]"


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    def __init__(self, tokens: dict[str, str], metrics: Metrics) -> None:
        self._tokens = [(token.encode(), role) for token, role in tokens.items()]
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        started = time.perf_counter()
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None  # UNIMPLEMENTED, whoever asks
        needed = required_role(method)
        if needed == OPEN:
            return handler
        denial = self._check(handler_call_details.invocation_metadata or (), method, needed)
        if denial is None:
            return handler
        code, message = denial
        # NOTE: the status interceptor never sees a refused call: record it here, so refusals show in the metrics
        self._metrics.rpc_requests.labels(method, code.name).inc()
        self._metrics.rpc_duration.labels(method, code.name).observe(time.perf_counter() - started)
        return _refusal(handler, code, message)

    def _check(
        self, metadata: Sequence[tuple[str, str | bytes]], method: str, needed: str
    ) -> tuple[grpc.StatusCode, str] | None:
        values = [value for key, value in metadata if key == "authorization"]
        if not values:
            return grpc.StatusCode.UNAUTHENTICATED, (
                "missing bearer token: send `authorization: Bearer TOKEN` metadata (CLI: --token or $TUNESERVE_TOKEN)"
            )
        value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return grpc.StatusCode.UNAUTHENTICATED, "malformed authorization metadata: expected `Bearer TOKEN`"
        role = self._role_of(token.strip().encode("latin-1", "replace"))
        if role is None:
            return grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"
        if role not in _GRANTED_BY[needed]:
            message = f"the {role} role may not call {method}; it needs the {needed} role"
            return grpc.StatusCode.PERMISSION_DENIED, message
        return None

    def _role_of(self, presented: bytes) -> str | None:
        # NOTE: compare with every token, in constant time each, so timing tells nothing about which one nearly matched
        found = None
        for token, role in self._tokens:
            if hmac.compare_digest(token, presented):
                found = role
        return found


def _refusal(handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as `handler` that ends the call with `code` before reading any request."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    def instead(behavior: Behavior) -> Behavior:
        return refuse

    return wrap_handler(handler, unary=instead, stream=instead)
