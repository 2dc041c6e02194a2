"""The picture a lineage report draws: typed nodes and edges, no ML Metadata types."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from mlpipe.metadata.graph import Artifact, Execution

NodeKind = Literal["execution", "artifact", "table", "version"]
EdgeKind = Literal["data", "baseline", "gate", "source", "registry"]


@dataclass(frozen=True)
class GraphNode:
    id: str  # "execution:16", "artifact:19", "table:p.d.t", "version:mnist/v2"
    kind: NodeKind
    name: str  # component, artifact type, table id or "mnist v2"
    ref: int | None = None  # the MLMD id of an execution or artifact
    detail: str = ""  # one short line: "blessed", "3000 rows", "default", ...


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    kind: EdgeKind
    label: str = ""  # the event's input/output key


@dataclass
class LineageGraph:
    """Nodes and edges of one model's lineage; edges of kind "data" are MLMD events."""

    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)

    def add_execution(self, e: Execution, detail: str = "") -> str:
        return self._add(GraphNode(f"execution:{e.id}", "execution", e.component, e.id, detail))

    def add_artifact(self, a: Artifact, detail: str = "") -> str:
        return self._add(GraphNode(f"artifact:{a.id}", "artifact", a.type, a.id, detail))

    def add_table(self, table: str, detail: str = "") -> str:
        return self._add(GraphNode(f"table:{table}", "table", table, None, detail))

    def add_version(self, model: str, version: str, detail: str = "") -> str:
        return self._add(GraphNode(f"version:{model}/{version}", "version", f"{model} {version}", None, detail))

    def consumed(self, a: Artifact, e: Execution, key: str, kind: EdgeKind = "data") -> None:
        self._edge(GraphEdge(self.add_artifact(a), self.add_execution(e), kind, key))

    def produced(self, e: Execution, a: Artifact, key: str) -> None:
        self._edge(GraphEdge(self.add_execution(e), self.add_artifact(a), "data", key))

    def link(self, source: str, target: str, kind: EdgeKind, label: str = "") -> None:
        self._edge(GraphEdge(source, target, kind, label))

    def describe(self, node_id: str, detail: str) -> None:
        """Set a node's one-line detail (replacing what it had)."""
        self.nodes[node_id] = dataclasses.replace(self.nodes[node_id], detail=detail)

    def _add(self, node: GraphNode) -> str:
        existing = self.nodes.get(node.id)
        if existing is None or (node.detail and not existing.detail):
            self.nodes[node.id] = node
        return node.id

    def _edge(self, edge: GraphEdge) -> None:
        if edge not in self.edges:
            self.edges.append(edge)
