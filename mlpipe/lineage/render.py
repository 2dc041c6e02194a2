"""Lineage and runs for people and machines: a text tree, JSON, and a Graphviz picture (DOT/PNG/SVG)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlpipe.display import display_path
from mlpipe.errors import EnvironmentSetupError
from mlpipe.lineage.graph import GraphEdge, GraphNode, LineageGraph
from mlpipe.lineage.report import (
    SCHEMA_VERSION,
    ExecutionInfo,
    LineageReport,
    TableLineage,
    Threshold,
)
from mlpipe.metadata.payloads import ACCURACY, failure_summary, short_metric
from mlpipe.metadata.runs import RunRecord

IMAGE_FORMATS = ("png", "svg")


# ---- JSON ----------------------------------------------------------------------------------------

def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)


def runs_document(pipeline: str, metadata_path: str, runs: Iterable[RunRecord]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "pipeline": pipeline, "metadata_path": metadata_path,
            "runs": [r.to_dict() for r in runs]}


# ---- text tree -----------------------------------------------------------------------------------

@dataclass
class _Node:
    title: str
    lines: list[str] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)


def _draw(node: _Node, prefix: str, last: bool, out: list[str]) -> None:
    out.append(f"{prefix}{'└─ ' if last else '├─ '}{node.title}")
    inner = prefix + ("   " if last else "│  ")
    for line in node.lines:
        out.append(f"{inner}{'│  ' if node.children else '   '}{line}".rstrip())
    for i, child in enumerate(node.children):
        _draw(child, inner, i == len(node.children) - 1, out)


def _tree(root: _Node) -> str:
    out = [root.title, *(f"   {line}" for line in root.lines)]
    for i, child in enumerate(root.children):
        _draw(child, "", i == len(root.children) - 1, out)
    return "\n".join(out)


def _hop(e: ExecutionInfo, parent_run: str | None) -> str:
    run = "" if e.run_id == parent_run else f", run {e.run_id}"
    return f"{e.component}  (execution {e.execution_id}, {e.state}, {e.seconds:.1f} s{run})"


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _threshold_text(t: Threshold, has_baseline: bool) -> str:
    parts = []
    if t.lower_bound is not None:
        parts.append(f"≥ {_f(t.lower_bound)}")
    if t.upper_bound is not None:
        parts.append(f"≤ {_f(t.upper_bound)}")
    if t.change_absolute is not None:
        sign = "-" if t.change_absolute <= 0 else "+"
        parts.append(f"≥ baseline {sign} {_f(abs(t.change_absolute))}" + ("" if has_baseline else " (no baseline)"))
    if t.change_relative is not None:
        parts.append(f"change vs baseline {t.change_relative:+.2%}")
    return f"{short_metric(t.metric)} " + " and ".join(parts)


def lineage_tree(r: LineageReport) -> str:
    """The report as an indented tree, from the served version down to the BigQuery tables."""
    if r.registry:
        tags = ["default"] if r.registry.default else []
        tags += [f"alias {a}" for a in r.registry.aliases]
        title = f"{r.registry.model} {r.registry.version}" + (f" ({', '.join(tags)})" if tags else "")
    else:
        title = "model not in the registry"
    root = _Node(f"{title}: Model #{r.model.artifact_id}, trained in run {r.run_id}",
                 [f"ML Metadata: {r.metadata_path} (pipeline {r.pipeline})"])
    chain: list[_Node] = []
    run = r.run_id

    if r.push:
        p = r.push
        text = (f"pushed {p.version or ''} → {p.destination}" if p.pushed else "not pushed (model not blessed)")
        chain.append(_Node(_hop(p.execution, run), [f"{text}  (PushedModel #{p.pushed_model.artifact_id})"]))
        run = p.execution.run_id
    if r.evaluation:
        ev = r.evaluation
        metrics = ", ".join(f"{short_metric(k)} {v:.4f}" if k == ACCURACY else f"{k} {v:g}"
                            for k, v in ev.metrics.items())
        lines = [f"metrics on {', '.join(ev.splits) or 'eval'}: {metrics or '-'}"]
        lines += [f"threshold: {_threshold_text(t, ev.baseline is not None)}" for t in ev.thresholds]
        blessing = f"#{ev.blessing.artifact_id}" if ev.blessing else "-"
        verdict = "-" if ev.blessed is None else ("blessed" if ev.blessed else "NOT blessed")
        lines.append(f"blessing: {verdict} (ModelBlessing {blessing})")
        baseline = {"baseline": {ACCURACY: ev.baseline.accuracy}} if ev.baseline and ev.baseline.accuracy else {}
        if ev.failures:
            lines.append(f"missed: {failure_summary(list(ev.failures), {'candidate': ev.metrics, **baseline})}")
        if ev.baseline:
            b = ev.baseline
            version = f" = registry {b.registry_version}" if b.registry_version else " (not in the registry)"
            picked = f", picked by baseline_resolver (execution {b.resolver_execution_id})" \
                if b.resolver_execution_id else ""
            lines.append(f"baseline: Model #{b.model.artifact_id}{version}, accuracy {_f(b.accuracy)}")
            lines.append(f"          trained in run {b.run_id}{picked}")
        else:
            lines.append("baseline: none (no earlier model: the accuracy floor alone decides)")
        chain.append(_Node(_hop(ev.execution, run), lines))
        run = ev.execution.run_id
    t = r.training
    # The Trainer's custom_config: {"search": SearchSpace fields, "eval_steps": N}.
    cfg = t.config.get("search", t.config) if isinstance(t.config.get("search"), dict) else t.config
    adanet = [f"families {'+'.join(cfg['families'])}" if "families" in cfg else "",
              f"{cfg.get('max_iterations')} iterations × {cfg.get('max_iteration_steps')} steps"
              if "max_iterations" in cfg else "",
              f"batch {cfg['batch_size']}" if "batch_size" in cfg else "",
              f"learning rate {cfg['learning_rate']:g}" if "learning_rate" in cfg else "",
              f"ensemble {cfg['ensemble']}" if "ensemble" in cfg else "",
              f"seed {cfg['seed']}" if "seed" in cfg else ""]
    lines = [f"model: Model #{r.model.artifact_id}  {r.model.uri}",
             f"steps: {t.train_steps if t.train_steps is not None else '-'} train, "
             f"{t.eval_steps if t.eval_steps is not None else '-'} eval"
             + (f" (global step {t.global_step})" if t.global_step is not None else ""),
             "AdaNet: " + ", ".join(a for a in adanet if a)]
    if t.ensemble:
        lines.append(f"final ensemble: {' + '.join(t.ensemble)}")
    scores = ", ".join(f"{k} {t.eval_metrics[k]:.4f}" for k in ("accuracy", "loss") if k in t.eval_metrics)
    lines.append(f"training time: {_f(t.train_seconds, 1)} s" + (f"; on the eval split: {scores}" if scores else ""))
    chain.append(_Node(_hop(t.execution, run), lines))
    run = t.execution.run_id
    if r.transform:
        tr = r.transform
        outs = [f"{a.type} #{a.artifact_id}" for a in (tr.transform_graph, tr.transformed_examples) if a]
        chain.append(_Node(_hop(tr.execution, run), [
            f"preprocessing_fn: {tr.preprocessing_fn or '-'} (analyze {', '.join(tr.analyze_splits) or '-'}; "
            f"transform {', '.join(tr.transform_splits) or '-'})",
            f"outputs: {', '.join(outs) or '-'}",
        ]))
        run = tr.execution.run_id
    if r.validation:
        v = r.validation
        if v.found:
            lines = [f"anomalies ({len(v.found)}):"]
            lines += [f"  {a.split}: {a.feature or '(dataset)'}: {a.description}" for a in v.found]
        else:
            lines = [f"anomalies: none in {', '.join(v.splits) or 'any split'} "
                     f"(ExampleAnomalies #{v.anomalies.artifact_id})"]
        if v.schema:
            origin = f" from {v.schema.schema_file}" if v.schema.schema_file else ""
            lines.append(f"schema: Schema #{v.schema.schema.artifact_id}{origin}")
        chain.append(_Node(_hop(v.execution, run), lines))
        run = v.execution.run_id
    if r.statistics:
        s = r.statistics
        counts = ", ".join(f"{k} {n}" for k, n in s.num_examples.items()) or "-"
        chain.append(_Node(_hop(s.execution, run),
                           [f"examples: {counts}  (ExampleStatistics #{s.statistics.artifact_id})"]))
        run = s.execution.run_id
    if r.example_gen:
        eg = r.example_gen
        node = _Node(_hop(eg.execution, run), [
            f"Examples #{eg.examples.artifact_id}, span {eg.span if eg.span is not None else '-'}, "
            f"version {eg.version if eg.version is not None else '-'}"
        ])
        width = max((len(sp.split) for sp in eg.splits), default=0)
        for sp in eg.splits:
            rows = f"{sp.rows} rows" if sp.rows is not None else "rows unknown"
            table_rows = f" of {sp.table_rows} in the table" if sp.table_rows is not None else ""
            node.children.append(_Node(f"{sp.split:<{width}} ← {', '.join(sp.tables) or '?'}: {rows}{table_rows}",
                                       [sp.query]))
        chain.append(node)

    parent = root
    for hop in chain:
        parent.children.append(hop)
        parent = hop
    return _tree(root)


def table_text(t: TableLineage) -> str:
    """The models trained from a table, one line each."""
    if not t.models:
        return f"no models in {t.metadata_path} were trained from {t.table}"
    lines = [f"models trained from {t.table} (pipeline {t.pipeline}):",
             f"{'MODEL':<9}{'RUN':<29}{'SPLITS':<12}{'VERSION':<9}{'BLESSED':<9}{'ACCURACY':>9}"]
    for m in t.models:
        blessed = "-" if m.blessed is None else ("yes" if m.blessed else "no")
        version = m.registry_version or (f"({m.pushed_version})" if m.pushed_version else "-")
        lines.append(f"{'#' + str(m.model.artifact_id):<9}{m.run_id or '-':<29}{','.join(m.splits):<12}"
                     f"{version:<9}{blessed:<9}{_pct(m.accuracy):>9}")
    return "\n".join(lines)


# ---- runs ----------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _when(iso: str) -> str:
    return iso[:19].replace("T", " ")


def runs_text(pipeline: str, metadata_path: str, runs: list[RunRecord]) -> str:
    if not runs:
        return f"no runs of {pipeline} in {metadata_path}"
    lines = [f"{len(runs)} run(s) of {pipeline} in {metadata_path}",
             f"{'RUN':<29}{'STARTED (UTC)':<21}{'STATUS':<12}{'TOTAL':>8}{'ACCURACY':>10}{'BASELINE':>10}  OUTCOME"]
    for r in runs:
        lines.append(f"{r.run_id:<29}{_when(r.started):<21}{r.status:<12}{r.seconds:>7.1f}s"
                     f"{_pct(r.accuracy):>10}{_pct(r.baseline_accuracy):>10}  {r.outcome}")
        steps = " · ".join(
            f"{c.component} {c.state if c.state in ('cached', 'failed', 'running') else f'{c.seconds:.1f}s'}"
            for c in r.components
        )
        lines += textwrap.wrap(steps, 116, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def run_text(r: RunRecord) -> str:
    lines = [
        f"run      : {r.run_id}",
        f"started  : {r.started}",
        f"status   : {r.status} after {r.seconds:.1f} s",
        f"outcome  : {r.outcome}",
        f"accuracy : {_pct(r.accuracy)} (baseline {_pct(r.baseline_accuracy)})",
        "model    : " + (f"Model #{r.model_artifact_id}  (mlpipe lineage --artifact-id {r.model_artifact_id})"
                          if r.model_artifact_id else "-"),
        "",
        f"{'COMPONENT':<26}{'EXEC':>5}  {'STATE':<10}{'STARTED (UTC)':<21}{'SECONDS':>8}  ARTIFACTS (in → out)",
    ]
    for c in r.components:
        ins = ", ".join(f"{a.key} #{a.artifact_id}" for a in c.inputs)
        outs = ", ".join(f"{a.key} #{a.artifact_id}" for a in c.outputs)
        lines.append(f"{c.component:<26}{c.execution_id:>5}  {c.state:<10}{_when(c.started):<21}{c.seconds:>8.1f}  "
                     f"{ins or '-'} → {outs or '-'}")
    return "\n".join(lines)


# ---- Graphviz ------------------------------------------------------------------------------------

_NODE_STYLE = {
    "execution": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe9f6", "color": "#3d6fa5"},
    "artifact": {"shape": "ellipse", "style": "filled", "fillcolor": "#fdf2d0", "color": "#b08a2e"},
    "table": {"shape": "cylinder", "style": "filled", "fillcolor": "#d9f0d3", "color": "#3e8a3e"},
    "version": {"shape": "tab", "style": "filled", "fillcolor": "#f6d5d5", "color": "#a33b3b"},
}
_EDGE_STYLE = {
    "data": {},
    "source": {"color": "#3e8a3e"},
    "baseline": {"style": "dashed", "color": "#b45f06", "fontcolor": "#b45f06"},
    "gate": {"style": "dotted", "color": "#555555"},
    "registry": {"style": "dashed", "color": "#a33b3b", "arrowhead": "none"},
}


def _label(n: GraphNode) -> str:
    head = f"{n.name} #{n.ref}" if n.kind == "artifact" else n.name
    if n.kind == "execution":
        head = f"{n.name}\nexecution {n.ref}"
    return f"{head}\n{n.detail}" if n.detail else head


def lineage_dot(graph: LineageGraph, title: str = "") -> str:
    """DOT text of the lineage picture: data flows top to bottom, from BigQuery to the registry."""
    import graphviz

    dot = graphviz.Digraph("lineage", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "fontsize": "12", "labelloc": "t", "label": title,
        "nodesep": "0.25", "ranksep": "0.35", "pad": "0.2",
    }, node_attr={"fontname": "Helvetica", "fontsize": "10"}, edge_attr={"fontname": "Helvetica",
                                                                          "fontsize": "8", "color": "#555555"})
    for n in graph.nodes.values():
        dot.node(_dot_id(n.id), _label(n), **_NODE_STYLE[n.kind])
    for e in graph.edges:
        dot.edge(_dot_id(e.source), _dot_id(e.target), label=_edge_label(e), **_EDGE_STYLE[e.kind])
    return dot.source


def _edge_label(e: GraphEdge) -> str:
    # The common keys say nothing the node labels do not; the unusual ones are the story.
    return "" if e.kind == "data" and e.label in ("examples", "model", "schema", "statistics") else e.label


def _dot_id(node_id: str) -> str:
    return node_id.replace(":", "_").replace(".", "_").replace("/", "_").replace("-", "_")


def render_image(dot_source: str, fmt: str) -> bytes:
    """PNG or SVG bytes of a DOT graph, drawn by Graphviz's `dot` program."""
    import graphviz

    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}")
    try:
        image = graphviz.Source(dot_source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise EnvironmentSetupError(
            "Graphviz's `dot` program is not installed; run `make setup` (or `apt-get install graphviz`), "
            "or use --format dot, which needs no program"
        ) from None
    return _palette_png(image) if fmt == "png" else image


def _palette_png(png: bytes) -> bytes:
    """The picture has a handful of flat colours: a 64-colour palette keeps it sharp at a quarter of
    the size of Graphviz's RGBA output."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        flat = Image.new("RGB", im.size, "white")
        flat.paste(im, mask=im.convert("RGBA").getchannel("A"))
    out = io.BytesIO()
    flat.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def run_summary_text(r: RunRecord, baseline_version: str | None = None,
                     baseline_registry_accuracy: float | None = None) -> str:
    """What `mlpipe run` prints at the end: each component's state and time, what was compared on which
    rows, then the outcome. `baseline_version`: the registry version behind the baseline model, and
    the test accuracy the registry recorded for it (measured when it was pushed, maybe on other rows)."""
    lines = [f"run {r.run_id}", f"{'component':<32}{'state':<10}{'seconds':>9}"]
    for c in r.components:
        lines.append(f"{c.component:<32}{c.state:<10}{c.seconds:>9.1f}")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f} %"

    blessed = "n/a" if r.blessed is None else ("yes" if r.blessed else "no")
    pushed = f"{r.pushed_version} ({display_path(r.pushed_destination)})" if r.pushed_destination else None
    if not pushed and r.already_version:
        pushed = f"not pushed: already {'serving' if r.already_default else 'registered'} as {r.already_version}"
    if r.baseline_accuracy is None:
        baseline = "n/a (no baseline: floor alone decides)"
    else:
        who = baseline_version or (f"Model #{r.baseline_model_id}" if r.baseline_model_id else "?")
        baseline = f"{pct(r.baseline_accuracy)} ({who}, re-evaluated on the same rows"
        if baseline_registry_accuracy is not None:
            baseline += f"; the registry records {pct(baseline_registry_accuracy)} from its own push"
        baseline += ")"
    rows = f"{r.eval_rows:,} rows" if r.eval_rows is not None else "? rows"
    splits = ", ".join(r.eval_splits) or "?"
    lines += [
        f"evaluated on              : split {splits}, {rows}" if r.accuracy is not None else
        "evaluated on              : n/a (no evaluation in this run)",
        f"test accuracy (new model) : {pct(r.accuracy)}",
        f"baseline accuracy         : {baseline}",
        f"blessed                   : {blessed}",
        f"pushed to                 : {pushed or 'not pushed'}",
        f"outcome                   : {r.outcome}",
    ]
    if r.nothing_new:
        lines.append("nothing new: every component was reused from the cache (no code, data or "
                     "configuration change; `mlpipe run --no-cache` re-runs everything)")
    return "\n".join(lines)
