"""The serving function's request handling: route, validate, predict, answer JSON — never a traceback.

Every failure a caller can cause is an MlpipeError subclass turned into `{"error": "..."}` with a 4xx
status; anything else is logged with its traceback and answered as a JSON 500 (a server bug).
The process-wide state (settings, model cache, prediction logger) is created on the first request
and reused while the instance stays warm. The registry's small state file is re-read (one stat()
when unchanged) on every request, so `mlpipe models set-default` takes effect without a restart.

A request for the default version (no version, no alias) may be answered by the model's challenger
(canary: a share of requests, chosen by a hash of the request id) or mirrored to it (shadow: the
default answers; the challenger's prediction is only logged) — see mlpipe/registry/rollout.py.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import flask
import numpy as np

from mlpipe.config import Settings, load_settings
from mlpipe.display import display_path
from mlpipe.errors import (
    AuthenticationError,
    BadInstanceError,
    ForbiddenError,
    MethodNotAllowedError,
    MlpipeError,
    NotFoundError,
    PayloadTooLargeError,
    RegistryConflictError,
    RequestTimeoutError,
    ServiceUnavailable,
    UnsupportedMediaTypeError,
    UsageError,
)
from mlpipe.feedback.store import FeedbackStore, FeedbackUnavailable, new_prediction_ids
from mlpipe.registry import Registry, VersionInfo, open_registry, validate_name
from mlpipe.serving import resources, routes
from mlpipe.serving.guard import MUTATING, EdgePolicy
from mlpipe.serving.instances import parse_body, parse_json
from mlpipe.serving.model_cache import ModelCache, to_predictions
from mlpipe.serving.prediction_log import PredictionLogger, RecentPredictions
from mlpipe.serving.read_guard import BODY_TIMEOUT_S, GUARD
from mlpipe.serving.shadow import ShadowRunner

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_500_000
# An oversized body declared (or sent chunked) up to this size is read and discarded so the client
# gets to read the 413 (closing a socket with unread input makes the kernel send a reset instead);
# the read deadline of read_guard bounds the time. A larger declared body is not waited for at all.
DRAIN_LIMIT_BYTES = 4 * 1024 * 1024
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
# Predictions (parse + model) running at once; more wait up to PREDICTION_QUEUE_S, then 503 with
# Retry-After. The front has many threads so slow clients cannot starve it; this keeps those threads
# from all decoding and predicting at once (memory grows with concurrent batches, the CPUs do not).
MAX_CONCURRENT_PREDICTIONS = 4
PREDICTION_QUEUE_S = 30.0
RETRY_AFTER_S = 2
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Call:
    request: flask.Request
    body: bytes
    request_id: str


@dataclass(frozen=True)
class Answer:
    status: int
    doc: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ServingApp:
    def __init__(self, settings: Settings, policy: EdgePolicy | None = None) -> None:
        self.settings = settings
        self.policy = EdgePolicy.from_settings(settings) if policy is None else policy
        self.registry = open_registry(settings.registry_location, settings.model_name)
        self.cache = ModelCache(self.registry.local_saved_model)
        self.prediction_log = PredictionLogger(settings) if settings.log_predictions else None
        self._prediction_slots = threading.BoundedSemaphore(MAX_CONCURRENT_PREDICTIONS)
        self.recent = RecentPredictions()
        self.feedback = FeedbackStore(settings, self.recent.get)
        self.shadow = ShadowRunner(self.cache, self.prediction_log)
        log.info("serving registry %s (project %s, prediction log %s)", display_path(self.registry.location),
                 settings.project, self.prediction_log.table_id if self.prediction_log else "off")

    # ---- edge -----------------------------------------------------------------------------------

    def handle(self, request: flask.Request) -> flask.Response:
        request_id = request.headers.get("X-Request-Id", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        headers = {"X-Request-Id": request_id}
        change = request.method in MUTATING
        status = 500
        try:
            # Who may ask first (headers only), for every route and method; then the body, bounded
            # (the framework reads whatever is left after any answer).
            self.policy.check(request.method, request.headers)
            body = self._read_body(request)
            raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
            routes.check_traversal(raw.split("?", 1)[0], request.path)
            match = routes.match(ROUTES, request.method, request.path)
            if match.handler is routes.OPTIONS:
                return flask.Response(status=204, headers={**headers, "Allow": ", ".join(match.allowed)})
            call = Call(request, body, request_id)
            change = change and match.handler not in COMPUTE_ONLY
            answer = match.handler(self, call, **match.params)
            status, doc = answer.status, answer.doc
            headers.update(answer.headers)
        except MlpipeError as e:
            status, doc = status_for(e), {"error": str(e)}
            if isinstance(e, MethodNotAllowedError):
                headers["Allow"] = ", ".join(e.allowed)
            if isinstance(e, AuthenticationError):
                headers["WWW-Authenticate"] = 'Bearer realm="mlpipe serve"'
            if isinstance(e, ServiceUnavailable):
                headers["Retry-After"] = str(getattr(e, "retry_after", RETRY_AFTER_S))
            log.debug("%s %s → %d %s", request.method, request.path[:200], status, e)
            if isinstance(e, PayloadTooLargeError):
                # Streamed, so the framework does not buffer the rest of the oversized body.
                return flask.Response(iter([_dumps(doc)]), status=status, headers=headers,
                                      mimetype="application/json")
        except Exception:
            log.exception("unhandled error in %s %s (request id %s)", request.method,
                          request.path[:200], request_id)
            status, doc = 500, {"error": f"internal server error (request id {request_id})"}
        finally:
            if change:
                _log_change(request, status, request_id)
        return flask.Response(_dumps(doc), status=status, headers=headers, mimetype="application/json")

    def _read_body(self, request: flask.Request) -> bytes:
        try:
            length = request.content_length
            if length is not None and length > MAX_BODY_BYTES:
                if length <= DRAIN_LIMIT_BYTES:
                    _drain(request, length)
                raise PayloadTooLargeError(_too_large(length))
            data = request.stream.read(MAX_BODY_BYTES + 1)
            if len(data) > MAX_BODY_BYTES:
                _drain(request, DRAIN_LIMIT_BYTES)
                raise PayloadTooLargeError(_too_large(None))
        except MlpipeError:
            raise
        except Exception as e:  # the client's fault: a broken chunk, a short body, a stalled body
            if GUARD.timed_out():
                raise RequestTimeoutError(
                    f"request body not received within {BODY_TIMEOUT_S:.0f}s") from None
            raise UsageError(f"request body could not be read: {type(e).__name__}") from None
        finally:
            GUARD.body_read()
        if GUARD.timed_out():
            raise RequestTimeoutError(f"request body not received within {BODY_TIMEOUT_S:.0f}s")
        return data

    # ---- registry lookups -----------------------------------------------------------------------

    def _registry(self, model: str, project: str | None = None) -> Registry:
        if project is not None:
            self._check_project(project)
        reg = self.registry.for_model(validate_name("model", model))
        if not reg.exists():
            raise NotFoundError(f"model {model!r} not found")
        return reg

    @staticmethod
    def _writable(reg: Registry) -> Registry:
        """A bucket registry (gs://) is changed by the pipeline and `mlpipe models`, never through a
        served function (its service account only reads the bucket)."""
        if "://" in reg.location:
            raise UsageError(f"the registry at {reg.location} is read-only here; change it with "
                             f"`mlpipe models ... --registry-root {reg.location}`")
        return reg

    def _tf_version(self, reg: Registry, number: str | None, alias: str | None) -> VersionInfo:
        if number is not None:
            if not (number.isascii() and number.isdigit()) or number.startswith("0"):
                raise UsageError(f"TF Serving version must be a positive integer, not {number[:32]!r}")
            return reg.get(f"v{number}")
        return reg.resolve(alias=alias)  # neither: the default version

    # ---- ml v1 ----------------------------------------------------------------------------------
    # Handlers take the request context and the route's parameters, and return an Answer.

    def _list_models(self, call: Call, project: str) -> Answer:
        self._check_project(project)
        models = []
        for name in self.registry.list_models():
            reg = self.registry.for_model(name)
            default = reg.resolve() if reg.default_version() else None
            models.append(resources.model_resource(project, name, default))
        return Answer(200, {"models": models} if models else {})

    def _get_model(self, call: Call, project: str, model: str) -> Answer:
        reg = self._registry(model, project)
        default = reg.resolve() if reg.default_version() else None
        return Answer(200, resources.model_resource(project, model, default))

    def _list_versions(self, call: Call, project: str, model: str) -> Answer:
        versions = self._registry(model, project).list_versions()
        size = _int_param(call.request, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        start = _int_param(call.request, "pageToken", 0, 0, len(versions))
        page = versions[start : start + size]
        # Like AI Platform: an empty list is an empty object.
        doc: dict[str, Any] = {}
        if page:
            doc["versions"] = [resources.version_resource(project, v) for v in page]
        if start + size < len(versions):
            doc["nextPageToken"] = str(start + size)
        return Answer(200, doc)

    def _get_version(self, call: Call, project: str, model: str, version: str) -> Answer:
        info = self._registry(model, project).get(version)
        return Answer(200, resources.version_resource(project, info))

    def _delete_version(self, call: Call, project: str, model: str, version: str) -> Answer:
        reg = self._writable(self._registry(model, project))
        info = reg.get(version)
        reg.delete(version)
        return Answer(200, resources.delete_operation(project, info))

    def _set_default(self, call: Call, project: str, model: str, version: str) -> Answer:
        info = self._writable(self._registry(model, project)).set_default(version)
        return Answer(200, resources.version_resource(project, info))

    def _predict(self, call: Call, project: str, model: str, version: str | None = None) -> Answer:
        reg = self._registry(model, project)
        if version is None:
            return self._predict_default(reg, call)
        return self._run_prediction(reg.resolve(version=version), call)

    def _predict_default(self, reg: Registry, call: Call) -> Answer:
        """The default's answer — or the canary challenger's for its share of request ids; a shadow
        challenger gets a copy of its share of requests, after the default has answered."""
        default = reg.resolve()
        rollout = reg.rollout()
        if rollout is None or not rollout.routes_to_challenger(call.request_id):
            return self._run_prediction(default, call)
        challenger = reg.get(rollout.version)
        if rollout.mode == "canary":
            return self._run_prediction(challenger, call, role="canary")
        batch = parse_body(call.body)  # once, for both models
        answer = self._run_prediction(default, call, batch=batch)
        # The shadow rows carry the default's prediction ids, so labels users send for the default's
        # answers also grade the challenger (`mlpipe flywheel`).
        ids = [p["predictionId"] for p in answer.doc["predictions"]]
        self.shadow.submit(challenger, batch, call.request_id, ids)
        return answer

    # ---- TF Serving -----------------------------------------------------------------------------

    def _tf_predict(self, call: Call, model: str, number: str | None = None,
                    alias: str | None = None) -> Answer:
        reg = self._registry(model)
        if number is None and alias is None:
            return self._predict_default(reg, call)
        return self._run_prediction(self._tf_version(reg, number, alias), call)

    def _tf_status(self, call: Call, model: str, number: str | None = None,
                   alias: str | None = None) -> Answer:
        reg = self._registry(model)
        if number is None and alias is None:
            return Answer(200, resources.tf_status(reg.list_versions()))
        return Answer(200, resources.tf_status([self._tf_version(reg, number, alias)]))

    def _tf_metadata(self, call: Call, model: str, number: str | None = None,
                     alias: str | None = None) -> Answer:
        return Answer(200, resources.tf_metadata(self._tf_version(self._registry(model), number, alias)))

    # ---- prediction -----------------------------------------------------------------------------

    def _run_prediction(self, info: VersionInfo, call: Call, role: str = "served",
                        batch: np.ndarray | None = None) -> Answer:
        started = time.perf_counter()
        if not self._prediction_slots.acquire(timeout=PREDICTION_QUEUE_S):
            raise ServiceUnavailable(f"the server is busy ({MAX_CONCURRENT_PREDICTIONS} predictions "
                                     f"running for over {PREDICTION_QUEUE_S:.0f}s); retry later")
        try:
            if batch is None:
                batch = parse_body(call.body)
            outputs = self.cache.get(info).predict(batch)
        finally:
            self._prediction_slots.release()
        latency_ms = (time.perf_counter() - started) * 1000
        ids = new_prediction_ids(len(batch))
        class_ids = outputs["class_ids"][:, 0].tolist()
        self.recent.add(info.model, info.name, ids, class_ids, batch)
        if self.prediction_log is not None:
            self.prediction_log.log(
                info.model, info.name, class_ids, outputs["probabilities"].max(axis=1).tolist(),
                latency_ms, call.request_id, ids, batch, role=role,
            )
        predictions = to_predictions(outputs)
        for prediction, pid in zip(predictions, ids, strict=True):
            prediction["predictionId"] = pid  # name it in POST …:feedback
        headers = {"X-Model-Version": f"{info.model}/{info.name}"}
        if role != "served":
            headers["X-Rollout"] = role
        return Answer(200, {"predictions": predictions}, headers)

    # ---- feedback -------------------------------------------------------------------------------

    def _feedback(self, call: Call, model: str, project: str | None = None) -> Answer:
        """A label for a served prediction or a new example → one row in DATASET.feedback."""
        if call.request.mimetype != "application/json":
            raise UnsupportedMediaTypeError(
                f"feedback must be sent as Content-Type: application/json, not {call.request.mimetype or 'none'!r}"
            )
        reg = self._registry(model, project)
        try:
            doc = parse_json(call.body)
        except BadInstanceError as e:
            raise UsageError(str(e).replace("request body", "feedback")) from None
        feedback = self.feedback.parse(doc, model, reg.default_version)
        try:
            recorded = self.feedback.record(feedback)
        except FeedbackUnavailable as e:
            return Answer(503, {"error": str(e)}, {"Retry-After": str(e.retry_after)})
        return Answer(201 if recorded.created else 200, {
            "feedbackId": feedback.feedback_id,
            "status": "recorded" if recorded.created else "already recorded",
            "source": feedback.source,
            "model": feedback.model,
            "version": feedback.version,
            "label": feedback.label,
            **({"predictionId": feedback.prediction_id} if feedback.prediction_id else {}),
        })

    def _check_project(self, project: str) -> None:
        if project != self.settings.project:
            raise NotFoundError(
                f"project {project[:64]!r} not found; this server serves project {self.settings.project!r}"
            )


ROUTES: tuple[routes.Route, ...] = (
    routes.Route(routes.ML_MODELS, {"GET": ServingApp._list_models}),
    routes.Route(routes.ML_MODEL, {"GET": ServingApp._get_model}),
    routes.Route(routes.ML_PREDICT, {"POST": ServingApp._predict}),
    routes.Route(routes.ML_VERSIONS, {"GET": ServingApp._list_versions}),
    routes.Route(routes.ML_VERSION, {"GET": ServingApp._get_version, "DELETE": ServingApp._delete_version}),
    routes.Route(routes.ML_VERSION_PREDICT, {"POST": ServingApp._predict}),
    routes.Route(routes.ML_SET_DEFAULT, {"POST": ServingApp._set_default}),
    routes.Route(routes.ML_FEEDBACK, {"POST": ServingApp._feedback}),
    routes.Route(routes.TF_FEEDBACK, {"POST": ServingApp._feedback}),
    routes.Route(routes.TF_PREDICT, {"POST": ServingApp._tf_predict}),
    routes.Route(routes.TF_STATUS, {"GET": ServingApp._tf_status}),
    routes.Route(routes.TF_METADATA, {"GET": ServingApp._tf_metadata}),
)


# Handlers that only compute (predictions): every other mutating request is logged as a change.
COMPUTE_ONLY = frozenset({ServingApp._predict, ServingApp._tf_predict})


def _log_change(request: flask.Request, status: int, request_id: str) -> None:
    """Every change requested over HTTP (registry writes and any route added later), with its caller."""
    env = request.environ
    caller = f"{env.get('REMOTE_ADDR', '?')}:{env.get('REMOTE_PORT', '?')}"
    log.info("HTTP change %s %s by %s (user agent %r, origin %r, token %s) → %d (request id %s)",
             request.method, request.path[:200], caller, request.headers.get("User-Agent", "")[:80],
             request.headers.get("Origin"), "yes" if request.headers.get("Authorization") else "no",
             status, request_id)


def status_for(error: MlpipeError) -> int:
    if isinstance(error, PayloadTooLargeError):
        return 413
    if isinstance(error, AuthenticationError):
        return 401
    if isinstance(error, ForbiddenError):
        return 403
    if isinstance(error, UnsupportedMediaTypeError):
        return 415
    if isinstance(error, MethodNotAllowedError):
        return 405
    if isinstance(error, RequestTimeoutError):
        return 408
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ServiceUnavailable):
        return 503
    if isinstance(error, (UsageError, RegistryConflictError)):
        return 400
    return 500


def _int_param(request: flask.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name)
    if text in (None, ""):
        return default
    # ASCII digits only ('²'.isdigit() is true) and short (int() refuses 4,300+ digit strings).
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= max(low, high):
        raise UsageError(f"query parameter {name} must be an integer in {low}..{max(low, high)}")
    return int(text)


def _drain(request: flask.Request, limit: int) -> None:
    remaining = limit
    while remaining > 0:
        chunk = request.stream.read(min(65536, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


def _too_large(length: int | None) -> str:
    size = f" ({length} bytes)" if length is not None else ""
    return f"request body{size} is larger than the {MAX_BODY_BYTES} bytes accepted"


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


_app: ServingApp | None = None
_app_lock = threading.Lock()


def get_app() -> ServingApp:
    """The instance's ServingApp, created from `load_settings()` on first use."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                _app = ServingApp(load_settings())
    return _app


def json_error(error: Exception) -> flask.Response:
    """Errors raised by the framework itself (its robots.txt 404, a client that disconnects
    mid-body, …) answered in the same JSON shape."""
    from werkzeug.exceptions import HTTPException

    if isinstance(error, HTTPException):
        status, message = error.code or 500, error.description or error.name
    else:
        log.error("unhandled framework error", exc_info=error)
        status, message = 500, "internal server error"
    return flask.Response(_dumps({"error": message}), status=status, mimetype="application/json")
