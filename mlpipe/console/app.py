"""The console: a Flask app over ML Metadata, the registry, BigQuery and the prediction log.

Every page has a stable URL (see `URLS` in the README section "The console"); every failure a user can
cause or meet (a bad id, no runs yet, BigQuery down) is a page with one sentence, never a traceback.
Actions change the registry only through a POST carrying the console's CSRF token, after a
confirmation page, and show the registry's own refusals.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import flask
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from mlpipe.config import Settings
from mlpipe.console import svg
from mlpipe.console.sources import Sources, artifact_file, list_files, safe, serving_summary
from mlpipe.contract import IMAGE_PIXELS, NUM_CLASSES
from mlpipe.errors import (
    MlpipeError,
    NotFoundError,
    RegistryConflictError,
    ServiceUnavailable,
    UsageError,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
ACTIONS = {
    "default": "Make {version} the default",
    "alias": "Point alias {alias} at {version}",
    "remove-alias": "Remove alias {alias} (it points at {version})",
    "delete": "Delete {version}",
}
CONSEQUENCES = {
    "default": "Requests without a version are answered by {version} from the next request on; the "
               "previous default stays in the registry (this is also how to roll back).",
    "alias": "Requests to alias {alias} are answered by {version} from the next request on.",
    "remove-alias": "Requests to alias {alias} will fail with 404 until it is set again.",
    "delete": "The version's files are removed; its name is never reused. The registry refuses this "
              "for the default version and for a version an alias points at.",
}
DONE = {
    "default": "{version} is now the default version.",
    "alias": "Alias {alias} now points at {version}.",
    "remove-alias": "Alias {alias} was removed.",
    "delete": "{version} was deleted.",
}


class CsrfError(MlpipeError):
    """A POST without the console's token."""


class Console:
    def __init__(self, settings: Settings, metadata_path: Path | None = None) -> None:
        self.settings = settings
        self.sources = Sources(settings, Path(metadata_path or settings.metadata_path))
        self.csrf_token = secrets.token_urlsafe(32)
        self._serving = None
        self._serving_lock = threading.Lock()
        self._serving_flask = flask.Flask("mlpipe-serving-in-process")

    # ---- in-process serving ---------------------------------------------------------------------

    def predict(self, pixels: list, version: str | None, alias: str | None) -> tuple[int, dict[str, Any]]:
        """One instance through the serving app's own request handling (routing, validation,
        prediction log), in this process."""
        from mlpipe.registry import validate_name

        if self._serving is None:
            with self._serving_lock:
                if self._serving is None:
                    from mlpipe.serving.app import ServingApp

                    self._serving = ServingApp(self.settings)
        model = self.settings.model_name
        if version:
            version = validate_name("version", version)
            path = f"/v1/projects/{self.settings.project}/models/{model}/versions/{version}:predict"
        elif alias:
            path = f"/v1/models/{model}/labels/{validate_name('alias', alias)}:predict"
        else:
            path = f"/v1/projects/{self.settings.project}/models/{model}:predict"
        body = json.dumps({"instances": [pixels]})
        with self._serving_flask.test_request_context(path, method="POST", data=body,
                                                      content_type="application/json"):
            response = self._serving.handle(flask.request)
        doc = json.loads(response.get_data())
        doc["served_by"] = response.headers.get("X-Model-Version", "")
        return response.status_code, doc


def create_app(settings: Settings, metadata_path: Path | None = None) -> flask.Flask:
    app = flask.Flask("mlpipe.console", template_folder=str(HERE / "templates"),
                      static_folder=str(HERE / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 2_000_000
    console = Console(settings, metadata_path)
    app.extensions["mlpipe_console"] = console
    src = console.sources

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"csrf_token": console.csrf_token, "settings": settings, "pct": _pct, "num": _num,
                "when": _when, "svg": svg, "model": settings.model_name}

    def page(template: str, status: int = 200, **ctx: Any) -> flask.Response:
        return flask.make_response(flask.render_template(template, **ctx), status)

    # ---- errors -----------------------------------------------------------------------------------

    @app.errorhandler(MlpipeError)
    def _mlpipe_error(e: MlpipeError):
        status = _status_for(e)
        return page("error.html", status, title=_error_title(status), message=str(e))

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return page("error.html", e.code or 500, title=e.name, message=e.description or e.name)

    @app.errorhandler(Exception)
    def _bug(e: Exception):
        log.exception("console error in %s %s", flask.request.method, flask.request.path[:200])
        return page("error.html", 500, title="Internal error",
                    message="The console met an unexpected error; the details are in its log.")

    def check_csrf() -> None:
        sent = flask.request.form.get("csrf_token") or flask.request.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(sent.encode(), console.csrf_token.encode()):
            raise CsrfError("missing or wrong CSRF token: reload the page and try again")

    # ---- overview ---------------------------------------------------------------------------------

    @app.get("/")
    def overview():
        versions, registry_error = safe(src.versions)
        graph, store_error = safe(src.graph)
        runs, runs_error = (safe(src.runs, graph) if graph else (None, store_error))
        bq = src.bq_problem()
        tables, tables_error = (None, bq) if bq else safe(src.tables)
        recent, serving_error = (None, bq) if bq else safe(src.predictions, 1.0)
        summary = serving_summary(recent) if recent else []
        default = next((v for v in versions or [] if v.is_default), None)
        aliases = sorted(src.registry.aliases().items()) if versions else []
        rollout = src.registry.rollout() if versions else None
        return page("overview.html", nav="overview", versions=versions, registry_error=registry_error,
                    default=default, aliases=aliases, rollout=rollout, runs=(runs or [])[:8], runs_error=runs_error,
                    tables=tables, tables_error=tables_error, serving=summary, serving_error=serving_error,
                    requests_last_hour=sum(s["requests"] for s in summary))

    # ---- runs -------------------------------------------------------------------------------------

    @app.get("/runs")
    def runs_page():
        graph, error = safe(src.graph)
        runs = src.runs(graph) if graph else []
        return page("runs.html", nav="runs", runs=runs, error=error)

    @app.get("/runs/compare")
    def compare():
        a, b = flask.request.args.get("a", ""), flask.request.args.get("b", "")
        if not a or not b:
            raise UsageError("choose two runs to compare (?a=RUN&b=RUN); tick two runs on the Runs page")
        graph = src.graph()
        left, right = (_run_facts(src, graph, src.run(graph, r)) for r in (a, b))
        keys = list(dict.fromkeys([*left, *right]))
        rows = [(k, left.get(k, ""), right.get(k, "")) for k in keys]
        return page("compare.html", nav="runs", a=src.run(graph, a), b=src.run(graph, b), rows=rows)

    @app.get("/runs/<run_id>")
    def run_page(run_id: str):
        graph = src.graph()
        record = src.run(graph, run_id)
        return page("run.html", nav="runs", run=record, dag=_run_dag(record),
                    timeline=_run_timeline(graph, record), details=_run_details(graph, record))

    @app.get("/executions/<int:execution_id>")
    def execution_page(execution_id: int):
        graph = src.graph()
        e = graph.execution(execution_id)
        links = graph.links_of_execution(e.id)
        arts = {a.id: a for a in graph.artifacts(link.artifact_id for link in links)}
        return page("execution.html", nav="runs", e=e, links=links, arts=arts)

    @app.get("/artifacts/<int:artifact_id>")
    def artifact_page(artifact_id: int):
        graph = src.graph()
        a = _artifact(graph, artifact_id)
        files = list_files(a.uri) if "://" not in a.uri and Path(a.uri).exists() else []
        producers = graph.producers(a.id)
        consumers = graph.consumers(a.id)
        return page("artifact.html", nav="runs", a=a, files=files, producers=producers, consumers=consumers,
                    gone="://" not in a.uri and not Path(a.uri).exists())

    @app.get("/artifacts/<int:artifact_id>/files/<path:relative>")
    def artifact_download(artifact_id: int, relative: str):
        a = _artifact(src.graph(), artifact_id)
        path = artifact_file(a.uri, relative)
        text = path.suffix in (".json", ".txt", ".pbtxt", ".jsonl", ".csv", ".py", ".sql")
        return flask.send_file(path, mimetype="text/plain" if text else None, as_attachment=False,
                               download_name=path.name)

    # ---- models -----------------------------------------------------------------------------------

    @app.get("/models")
    def models_page():
        versions, error = safe(src.versions)
        rows = []
        for v in versions or []:
            report = src.search_report(v)
            per_class = (report.get("test") or {}).get("per_class_accuracy") or []
            rows.append((v, min(per_class) if per_class else None,
                         (report.get("final_ensemble") or {}).get("name")))
        audit, _ = safe(src.registry.audit)
        rollout, _ = safe(src.registry.rollout)
        return page("models.html", nav="models", rows=rows, error=error, done=_done_message(),
                    audit=list(reversed(audit or []))[:50], rollout=rollout)

    @app.get("/models/<version>")
    def version_page(version: str):
        info = src.registry.get(version)
        report = src.search_report(info)
        test = report.get("test") or {}
        per_class = test.get("per_class_accuracy") or []
        matrix = test.get("confusion_matrix")
        plots = {
            "per_class": svg.bars([100 * x for x in per_class], [str(i) for i in range(len(per_class))],
                                  f"{info.name}: test accuracy per class", fmt=lambda x: f"{x:.1f}",
                                  width=420, highlight=per_class.index(min(per_class)) if per_class else None)
            if per_class else None,
            "confusion": svg.heatmap(matrix, f"{info.name}: confusion matrix (test split)") if matrix else None,
            "search": svg.search_plot(report.get("iterations") or [], f"{info.name}: AdaNet search")
            if report.get("iterations") else None,
        }
        signature = _signature_rows(info.signatures or {})
        return page("version.html", nav="models", v=info, report=report, plots=plots, signature=signature,
                    png_plots=src.plots(info), aliases=sorted(src.registry.aliases().items()),
                    done=_done_message(), others=[x.name for x in src.versions()])

    @app.get("/models/<version>/plots/<name>")
    def version_plot(version: str, name: str):
        return flask.send_file(src.plot_file(src.registry.get(version), name), mimetype="image/png")

    @app.get("/models/<version>/confirm")
    def confirm(version: str):
        action, alias = _action_args(flask.request.args)
        info = src.registry.get(version)
        words = {"version": info.name, "alias": alias or ""}
        return page("confirm.html", nav="models", v=info, action=action, alias=alias,
                    question=ACTIONS[action].format(**words) + "?",
                    consequence=CONSEQUENCES[action].format(**words))

    @app.post("/models/<version>/<action>")
    def act(version: str, action: str):
        check_csrf()
        if action not in ACTIONS:
            raise NotFoundError(f"no action {action[:40]!r}; one of {', '.join(ACTIONS)}")
        _, alias = _action_args({"action": action, "alias": flask.request.form.get("alias", "")})
        reg = src.registry
        if action == "default":
            reg.set_default(version)
        elif action == "alias":
            reg.set_alias(alias, version)
        elif action == "remove-alias":
            target = reg.aliases().get(alias)
            if target is not None and target != version:
                raise RegistryConflictError(f"alias {alias} points at {target}, not {version}")
            reg.remove_alias(alias)
        else:
            reg.delete(version)
            return flask.redirect(flask.url_for("models_page", done="delete", version=version), 303)
        log.info("console: %s %s %s", action, version, alias or "")
        return flask.redirect(flask.url_for("version_page", version=version, done=action, alias=alias or None), 303)

    # ---- lineage ----------------------------------------------------------------------------------

    @app.get("/lineage")
    def lineage_default():
        default = src.registry.default_version() if src.registry.exists() else None
        if default is None:
            return page("error.html", 404, title="No lineage yet",
                        message=f"model {settings.model_name!r} has no default version; run the pipeline "
                        "(`mlpipe run`) to push one, then come back.")
        return flask.redirect(flask.url_for("lineage_page", version=default))

    @app.get("/lineage/<version>")
    def lineage_page(version: str):
        from mlpipe.lineage import report as lineage_report

        graph = src.graph()
        found = lineage_report.lineage_of_version(graph, src.registry, version=version)
        return page("lineage.html", nav="lineage", r=found, picture=_lineage_svg(found.graph, f"Lineage of {version}"),
                    versions=[v.name for v in src.versions()])

    # ---- data -------------------------------------------------------------------------------------

    @app.get("/data")
    def data_page():
        bq = src.bq_problem()
        tables, error = (None, bq) if bq else safe(src.tables)
        histograms = {}
        if tables:
            labelled = [t["name"] for t in tables if t["name"] in ("train", "valid", "test")]
            histograms, hist_error = safe(src.label_histograms, labelled) if labelled else ({}, None)
            error = error or hist_error
        graph, store_error = safe(src.graph)
        runs = src.runs(graph) if graph else []
        return page("data.html", nav="data", tables=tables or [], error=error, histograms=histograms or {},
                    runs=runs, store_error=store_error)

    @app.get("/data/tables/<table>")
    def table_page(table: str):
        from mlpipe.lineage import report as lineage_report

        bq = src.bq_problem()
        info, error = (None, bq) if bq else safe(src.table, table)
        short = src._table_name(table)
        table_id = settings.table_id(short)
        graph, store_error = safe(src.graph)
        trained = lineage_report.models_from_table(graph, src.registry, table_id).models if graph else []
        return page("table.html", nav="data", table_id=table_id, info=info, error=error, trained=trained,
                    store_error=store_error, picture=_table_svg(table_id, trained))

    @app.get("/data/runs/<run_id>")
    def run_data_page(run_id: str):
        graph = src.graph()
        record = src.run(graph, run_id)
        return page("run_data.html", nav="data", run=record, **_run_data(graph, record))

    # ---- serving ----------------------------------------------------------------------------------

    @app.get("/serving")
    def serving_page():
        bq = src.bq_problem()
        rows, error = (None, bq) if bq else safe(src.predictions)
        rows = rows or []
        summary = serving_summary(rows)
        hour, _ = (None, None) if bq else safe(src.predictions, 1.0)
        low = sorted((r for r in rows if float(r["confidence"]) < 0.6), key=lambda r: r["time"], reverse=True)[:20]
        return page("serving.html", nav="serving", summary=summary, error=error, rows=len(rows),
                    last_hour=serving_summary(hour or []), low=low, table=settings.table_id("predictions"))

    # ---- try it -----------------------------------------------------------------------------------

    @app.get("/try")
    def try_page():
        versions, error = safe(src.versions)
        aliases = sorted(src.registry.aliases().items()) if versions else []
        return page("try.html", nav="try", versions=versions or [], aliases=aliases, error=error)

    @app.post("/try/predict")
    def try_predict():
        check_csrf()
        doc = flask.request.get_json(silent=True)
        if not isinstance(doc, dict):
            raise UsageError('send JSON like {"pixels": [784 numbers], "version": "v1"}')
        pixels = doc.get("pixels")
        if not isinstance(pixels, list) or len(pixels) != IMAGE_PIXELS:
            raise UsageError(f"pixels must be a list of {IMAGE_PIXELS} numbers (28×28, 0–255)")
        target = str(doc.get("target") or "")
        version = target[len("version:"):] if target.startswith("version:") else None
        alias = target[len("alias:"):] if target.startswith("alias:") else None
        status, answer = console.predict(pixels, version, alias)
        return flask.jsonify(answer), status

    @app.get("/healthz")
    def healthz():
        return flask.jsonify({"ok": True})

    # JSON answers for the JSON endpoint's errors.
    @app.after_request
    def _headers(response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; frame-ancestors 'none'")
        if flask.request.path == "/try/predict" and response.status_code >= 400 \
                and response.mimetype == "text/html":
            message = flask.g.get("error_message", "")
            return flask.make_response(flask.jsonify({"error": message or "request failed"}), response.status_code)
        return response

    @app.before_request
    def _remember():
        flask.g.error_message = ""

    original = app.handle_user_exception

    def handle(e: Exception):
        if isinstance(e, MlpipeError):
            flask.g.error_message = str(e)
        return original(e)

    app.handle_user_exception = handle  # type: ignore[method-assign]
    return app


# ---- page helpers ---------------------------------------------------------------------------------

def _artifact(graph, artifact_id: int):
    """An artifact of this pipeline (its files are the only files the console serves)."""
    a = graph.artifact(artifact_id)
    if not graph.in_pipeline(a.id):
        raise NotFoundError(f"artifact {artifact_id} is not from pipeline {graph.pipeline_name!r}")
    return a


def _status_for(e: MlpipeError) -> int:
    from mlpipe.metadata.graph import MetadataStoreError

    if isinstance(e, CsrfError):
        return 403
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, RegistryConflictError):
        return 409
    if isinstance(e, UsageError):
        return 400
    if isinstance(e, (ServiceUnavailable, MetadataStoreError)):
        return 503
    return 500


def _error_title(status: int) -> str:
    return {400: "Bad request", 403: "Forbidden", 404: "Not found", 409: "Refused by the registry",
            503: "Not available"}.get(status, "Error")


def _action_args(args) -> tuple[str, str | None]:
    from mlpipe.registry import validate_name

    action = args.get("action", "")
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action[:40]!r}; one of {', '.join(ACTIONS)}")
    alias = args.get("alias") or None
    if action in ("alias", "remove-alias"):
        if not alias:
            raise UsageError("give the alias name")
        validate_name("alias", alias)
    return action, alias


def _done_message() -> str:
    args = flask.request.args
    done = args.get("done")
    if done not in DONE:
        return ""
    return DONE[done].format(version=args.get("version") or flask.request.view_args.get("version", ""),
                             alias=args.get("alias", ""))


def _signature_rows(signatures: dict) -> list[tuple[str, str, str, str, str]]:
    """(signature, input/output, tensor name, dtype, shape like [-1, 784]) of the public signatures."""
    rows = []
    for sig, spec in sorted(signatures.items()):
        if sig.startswith("__") or not isinstance(spec, dict):
            continue
        for kind in ("inputs", "outputs"):
            for name, tensor in sorted((spec.get(kind) or {}).items()):
                tensor = tensor if isinstance(tensor, dict) else {}
                shape = tensor.get("tensor_shape") or {}
                dims = "?" if shape.get("unknown_rank") else \
                    "[" + ", ".join(str(d.get("size", "?")) for d in shape.get("dim", [])) + "]"
                rows.append((sig, kind[:-1], name, str(tensor.get("dtype", "")), dims))
    return rows


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _when(iso: Any) -> str:
    text = str(iso or "")
    return text.replace("T", " ")[:19] if text else "–"


def _run_dag(record) -> Markup:
    """The run's components as a DAG: an edge where one component's output is another's input."""
    produced = {link.artifact_id: c.component for c in record.components for link in c.outputs}
    boxes = [svg.Box(f"c:{c.component}", c.component, f"{c.state} · {c.seconds:.1f} s",
                     f"/executions/{c.execution_id}", svg.STATE_COLOURS.get(c.state, "#9e9e9e"),
                     testid=f"component-{c.component}")
             for c in record.components]
    edges = [(f"c:{produced[link.artifact_id]}", f"c:{c.component}", link.key)
             for c in record.components for link in c.inputs if link.artifact_id in produced]
    return svg.layered(boxes, edges, f"components of run {record.run_id}", box_w=170)


def _run_timeline(graph, record) -> Markup:
    executions = {e.id: e for e in graph.run_executions(record.run_id)}
    if not executions:
        return svg.timeline([], "")
    t0 = min(e.started_ms for e in executions.values())
    items = [(c.component, (executions[c.execution_id].started_ms - t0) / 1000.0, c.seconds, c.state)
             for c in record.components if c.execution_id in executions]
    return svg.timeline(items, f"time per component of run {record.run_id}")


def _split_names(artifact) -> list[str]:
    try:
        names = json.loads(str(artifact.prop("split_names") or "[]"))
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def _run_outputs(graph, record, type_name: str):
    for c in record.components:
        for link in c.outputs:
            if link.type == type_name:
                return graph.artifact(link.artifact_id)
    return None


def _run_details(graph, record) -> dict[str, Any]:
    from mlpipe.metadata import payloads

    anomalies_artifact = _run_outputs(graph, record, "ExampleAnomalies")
    anomalies = payloads.split_anomalies(anomalies_artifact.uri, _split_names(anomalies_artifact)) \
        if anomalies_artifact else []
    evaluation = _run_outputs(graph, record, "ModelEvaluation")
    metrics = payloads.evaluation_metrics(evaluation.uri) if evaluation else {}
    failures = payloads.validation_failures(evaluation.uri) if evaluation else []
    model_run = _run_outputs(graph, record, "ModelRun")
    summary = payloads.training_summary(model_run.uri) if model_run else {}
    return {"anomalies": anomalies, "metrics": metrics, "failures": failures,
            "ensemble": payloads.final_ensemble(summary), "summary": summary,
            "failed": [c for c in record.components if c.state == "failed"]}


def _run_facts(src: Sources, graph, record) -> dict[str, str]:
    """What a comparison shows: outcome, data, config and the chosen architecture, as text."""
    from mlpipe.metadata import payloads

    facts = {"run": record.run_id, "started": _when(record.started), "duration": f"{record.seconds:.1f} s",
             "status": record.status, "outcome": record.outcome, "accuracy": _pct(record.accuracy),
             "baseline accuracy": _pct(record.baseline_accuracy), "pushed": record.pushed_version or "–"}
    for c in record.components:
        e = graph.execution(c.execution_id)
        if c.component.endswith("ExampleGen"):
            facts["data fingerprint"] = str(e.prop("source_fingerprint") or "–")
            config = e.json_prop("input_config") or {}
            for split in config.get("splits", []):
                facts[f"query {split.get('name')}"] = str(split.get("pattern", ""))
        if c.component == "Trainer":
            custom = e.json_prop("custom_config") or {}
            for key, value in _flatten(custom.get("training", custom)).items():
                facts[f"config {key}"] = value
    model_run = _run_outputs(graph, record, "ModelRun")
    if model_run is not None:
        ensemble = payloads.final_ensemble(payloads.training_summary(model_run.uri))
        facts["chosen architecture"] = " + ".join(ensemble) or "–"
    return facts


def _flatten(doc: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(doc, dict):
        out: dict[str, str] = {}
        for k, v in doc.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(doc) if not isinstance(doc, str) else doc}


def _lineage_svg(g, title: str) -> Markup:
    boxes = []
    for n in g.nodes.values():
        href = {"execution": f"/executions/{n.ref}", "artifact": f"/artifacts/{n.ref}",
                "table": f"/data/tables/{n.name}",
                "version": f"/models/{n.name.split(' ')[-1]}"}.get(n.kind, "")
        boxes.append(svg.Box(n.id, n.name if n.kind != "table" else n.name.split(".", 1)[-1],
                             n.detail or n.kind, href, svg.KIND_COLOURS.get(n.kind, "#555"),
                             testid=f"{n.kind}-{n.name.replace(' ', '-')}"))
    edges = [(e.source, e.target, e.label or e.kind) for e in g.edges]
    return svg.layered(boxes, edges, title)


def _table_svg(table_id: str, trained) -> Markup:
    boxes = [svg.Box(f"table:{table_id}", table_id.split(".", 1)[-1], "BigQuery table", "", svg.KIND_COLOURS["table"])]
    edges = []
    for m in trained:
        node = f"model:{m.model.artifact_id}"
        boxes.append(svg.Box(node, f"Model #{m.model.artifact_id}", f"run {str(m.run_id)[:19]}",
                             f"/artifacts/{m.model.artifact_id}", svg.KIND_COLOURS["artifact"]))
        edges.append((f"table:{table_id}", node, ", ".join(m.splits)))
        if m.registry_version:
            boxes.append(svg.Box(f"v:{m.registry_version}", f"{m.registry_version}", "registry version",
                                 f"/models/{m.registry_version}", svg.KIND_COLOURS["version"],
                                 testid=f"version-{m.registry_version}"))
            edges.append((node, f"v:{m.registry_version}", "pushed"))
    return svg.layered(boxes, edges, f"models trained from {table_id}")


def _run_data(graph, record) -> dict[str, Any]:
    from mlpipe.metadata import payloads

    stats_artifact = _run_outputs(graph, record, "ExampleStatistics")
    splits: dict[str, Any] = {}
    if stats_artifact is not None:
        for split, proto in payloads.split_statistics(stats_artifact.uri, _split_names(stats_artifact)).items():
            splits[split] = _feature_rows(proto)
    anomalies_artifact = _run_outputs(graph, record, "ExampleAnomalies")
    anomalies = payloads.split_anomalies(anomalies_artifact.uri, _split_names(anomalies_artifact)) \
        if anomalies_artifact else []
    return {"splits": splits, "anomalies": anomalies, "stats_artifact": stats_artifact,
            "anomalies_artifact": anomalies_artifact}


def _feature_rows(proto) -> dict[str, Any]:
    """A split's TFDV statistics: examples and, per feature, type, presence and numeric summary, and a
    histogram plot for numeric features with few values (the label)."""
    rows, plots, examples = [], {}, 0
    for dataset in proto.datasets:
        examples += int(dataset.num_examples)
        for f in dataset.features:
            name = f.path.step[-1] if f.path.step else f.name
            row: dict[str, Any] = {"name": name, "type": _feature_type(f.type)}
            which = f.WhichOneof("stats")
            common = getattr(getattr(f, which), "common_stats", None) if which else None
            if common is not None:
                row.update(present=int(common.num_non_missing), missing=int(common.num_missing),
                           avg_values=common.avg_num_values)
            if which == "num_stats":
                n = f.num_stats
                row.update(mean=n.mean, std=n.std_dev, min=n.min, max=n.max, zeros=int(n.num_zeros))
                if n.max - n.min <= NUM_CLASSES and n.histograms:
                    buckets = n.histograms[0].buckets
                    plots[name] = svg.bars([b.sample_count for b in buckets],
                                           [f"{b.low_value:.0f}" for b in buckets],
                                           f"{name} histogram", fmt=lambda x: f"{x:.0f}", width=420)
            rows.append(row)
    return {"examples": examples, "features": rows, "plots": plots}


def _feature_type(code: int) -> str:
    return {0: "INT", 1: "FLOAT", 2: "STRING", 3: "BYTES", 4: "STRUCT"}.get(code, str(code))
