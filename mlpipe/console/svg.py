"""Server-side plots as inline SVG: bars, a confusion-matrix heat map, a scatter of search candidates,
a layered graph (component DAGs and lineage) and a time line. No JavaScript, no CDN; every text is
escaped, every link is built by the caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

STATE_COLOURS = {
    "complete": "#2e7d32", "cached": "#607d8b", "failed": "#c62828", "running": "#f9a825",
    "new": "#f9a825", "canceled": "#8d6e63", "unknown": "#9e9e9e",
}
KIND_COLOURS = {"execution": "#1565c0", "artifact": "#6a1b9a", "table": "#ef6c00", "version": "#2e7d32"}


def _svg(width: float, height: float, body: str, label: str) -> Markup:
    return Markup(
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def bars(values: Sequence[float], labels: Sequence[str], title: str, fmt: Callable[[float], str] = str,
         width: int = 360, height: int = 160, colour: str = "#1565c0", highlight: int | None = None) -> Markup:
    """Vertical bars, one per value, with its label under it and its value above it."""
    n = max(len(values), 1)
    top = max([v for v in values if v is not None] or [0]) or 1
    plot_h = height - 34
    step = width / n
    parts = []
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        v = v or 0
        h = plot_h * v / top
        x = i * step + step * 0.15
        fill = "#ef6c00" if highlight == i else colour
        parts.append(
            f'<rect x="{x:.1f}" y="{14 + plot_h - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{fill}">'
            f"<title>{escape(label)}: {escape(fmt(v))}</title></rect>"
            f'<text x="{x + step * 0.35:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{10 + plot_h - h:.1f}" text-anchor="middle" class="small">'
            f"{escape(fmt(v))}</text>"
        )
    return _svg(width, height, "".join(parts), title)


def heatmap(matrix: Sequence[Sequence[int]], title: str, cell: int = 30) -> Markup:
    """A confusion matrix: rows are the true class, columns the predicted one; darker is more."""
    n = len(matrix)
    pad = 34
    size = pad + n * cell
    top = max((v for row in matrix for v in row), default=0) or 1
    parts = [f'<text x="{pad + n * cell / 2:.0f}" y="11" text-anchor="middle" class="small">predicted</text>',
             f'<text x="10" y="{pad + n * cell / 2:.0f}" text-anchor="middle" class="small" '
             f'transform="rotate(-90 10 {pad + n * cell / 2:.0f})">true</text>']
    for i in range(n):
        parts.append(f'<text x="{pad + i * cell + cell / 2:.0f}" y="{pad - 6}" text-anchor="middle">{i}</text>')
        parts.append(f'<text x="{pad - 8}" y="{pad + i * cell + cell / 2 + 4:.0f}" text-anchor="end">{i}</text>')
        for j in range(n):
            v = matrix[i][j]
            shade = v / top
            if i == j:
                fill = f"rgba(21,101,192,{0.05 + 0.95 * shade:.3f})"
            else:
                fill = f"rgba(198,40,40,{min(1, 0.08 + 3 * shade):.3f})"
            if v == 0:
                fill = "#fafafa"
            ink = "#fff" if shade > 0.5 else "#222"
            parts.append(
                f'<rect x="{pad + j * cell}" y="{pad + i * cell}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                f"<title>true {i}, predicted {j}: {v}</title></rect>"
                f'<text x="{pad + j * cell + cell / 2:.0f}" y="{pad + i * cell + cell / 2 + 4:.0f}" '
                f'text-anchor="middle" class="small" fill="{ink}">{v}</text>'
            )
    return _svg(size, size, "".join(parts), title)


def search_plot(iterations: Sequence[dict], title: str, width: int = 420, height: int = 200) -> Markup:
    """Every candidate's eval accuracy per AdaNet iteration (dots) and the chosen one (line)."""
    points = [(it.get("iteration", k), c.get("accuracy"), c.get("name") == it.get("selected"), c.get("name", ""))
              for k, it in enumerate(iterations) for c in it.get("candidates", []) if c.get("accuracy") is not None]
    if not points:
        return Markup('<p class="empty">The search report has no candidate accuracies.</p>')
    lo = min(p[1] for p in points)
    hi = max(p[1] for p in points)
    lo, hi = lo - 0.01, hi + 0.01
    n = max(p[0] for p in points) + 1
    left, bottom = 46, 24

    def xy(i: float, acc: float) -> tuple[float, float]:
        x = left + (i + 0.5) * (width - left - 10) / n
        y = 10 + (height - bottom - 10) * (hi - acc) / (hi - lo)
        return x, y

    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>',
             f'<text x="4" y="14" class="small">{100 * hi:.1f}%</text>',
             f'<text x="4" y="{height - bottom}" class="small">{100 * lo:.1f}%</text>']
    chosen = []
    for i, acc, selected, name in points:
        x, y = xy(i, acc)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{6 if selected else 4}" '
                     f'fill="{"#ef6c00" if selected else "#90a4ae"}"><title>iteration {i}: {escape(name)} '
                     f'{100 * acc:.2f}%{" (chosen)" if selected else ""}</title></circle>')
        if selected:
            chosen.append((x, y))
    for i in range(n):
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">iteration {i}</text>')
    if len(chosen) > 1:
        parts.insert(0, '<polyline fill="none" stroke="#ef6c00" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in chosen) + '"/>')
    return _svg(width, height, "".join(parts), title)


@dataclass(frozen=True)
class Box:
    id: str
    title: str
    subtitle: str = ""
    href: str = ""
    colour: str = "#1565c0"
    testid: str = ""


def layered(boxes: Sequence[Box], edges: Sequence[tuple[str, str, str]], title: str,
            box_w: int = 190, box_h: int = 46, gap_x: int = 24, gap_y: int = 30) -> Markup:
    """A top-down layered drawing of a DAG: each box in the row of its longest path from a source;
    boxes are links when they have an href; edges are (source, target, label)."""
    ids = [b.id for b in boxes]
    known = set(ids)
    edges = [e for e in edges if e[0] in known and e[1] in known and e[0] != e[1]]
    layer = {i: 0 for i in ids}
    for _ in range(len(ids)):  # longest path by relaxation; a cycle stops after len(ids) rounds
        changed = False
        for s, t, _ in edges:
            if layer[t] < layer[s] + 1:
                layer[t] = layer[s] + 1
                changed = True
        if not changed:
            break
    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(layer[i], []).append(i)
    pos = {}
    widest = max((len(m) for m in columns.values()), default=1)
    for row, members in columns.items():
        indent = (widest - len(members)) * (box_w + gap_x) / 2
        for col, i in enumerate(members):
            pos[i] = (10 + indent + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    width = 20 + widest * (box_w + gap_x) - gap_x
    height = 20 + (max(columns) + 1 if columns else 1) * (box_h + gap_y) - gap_y
    parts = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#78909c"/></marker></defs>']
    for s, t, label in edges:
        (sx, sy), (tx, ty) = pos[s], pos[t]
        x1, y1, x2, y2 = sx + box_w / 2, sy + box_h, tx + box_w / 2, ty
        mid = (y1 + y2) / 2
        parts.append(f'<path d="M {x1:.0f} {y1:.0f} C {x1:.0f} {mid:.0f}, {x2:.0f} {mid:.0f}, {x2:.0f} {y2:.0f}" '
                     f'fill="none" stroke="#b0bec5" stroke-width="1.5" marker-end="url(#arrow)">'
                     f"<title>{escape(label)}</title></path>")
    for b in boxes:
        x, y = pos[b.id]
        text = (f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#fff" stroke="{b.colour}" '
                f'stroke-width="2"/><rect x="{x}" y="{y}" width="6" height="{box_h}" rx="3" fill="{b.colour}"/>'
                f'<text x="{x + 12}" y="{y + 19}" class="node-title">{escape(_cut(b.title, 26))}</text>'
                f'<text x="{x + 12}" y="{y + 36}" class="small">{escape(_cut(b.subtitle, 32))}</text>'
                f"<title>{escape(b.title)} {escape(b.subtitle)}</title>")
        testid = f' data-testid="{escape(b.testid)}"' if b.testid else ""
        if b.href:
            parts.append(f'<a href="{escape(b.href)}" class="node"{testid}>{text}</a>')
        else:
            parts.append(f'<g class="node"{testid}>{text}</g>')
    return _svg(width, height, "".join(parts), title)


def timeline(items: Sequence[tuple[str, float, float, str]], title: str, width: int = 640) -> Markup:
    """One bar per (label, start seconds, duration seconds, state), on a shared time axis."""
    if not items:
        return Markup('<p class="empty">No executions.</p>')
    end = max(s + d for _, s, d, _ in items) or 1
    left, row = 150, 20
    height = 24 + row * len(items)
    scale = (width - left - 60) / end
    parts = []
    for k, (label, start, seconds, state) in enumerate(items):
        y = 4 + k * row
        w = max(seconds * scale, 2)
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{left + start * scale:.1f}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{STATE_COLOURS.get(state, "#9e9e9e")}"><title>{escape(label)}: {escape(state)}, '
            f'{seconds:.1f} s</title></rect>'
            f'<text x="{left + start * scale + w + 4:.1f}" y="{y + 13}" class="small">{seconds:.1f} s</text>'
        )
    parts.append(f'<text x="{left}" y="{height - 4}" class="small">0 s</text>'
                 f'<text x="{width - 60}" y="{height - 4}" class="small">{end:.1f} s</text>')
    return _svg(width, height, "".join(parts), title)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
