"""The ratios as an SVG bar chart, drawn by hand (no plotting library needed)."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH = 760
LABEL = 250
BAR = 16
GAP = 8
PANEL_TOP = 46
PLOT = WIDTH - LABEL - 70


Bar = tuple[str, dict[str, Any], float]


def bars(results: dict[str, Any]) -> tuple[list[Bar], list[Bar]]:
    """(label, stat, target) for the "higher is better" and the "lower is better" panel."""
    higher: list[Bar] = []
    lower: list[Bar] = []
    from bench.report import BROKER_NAMES, limit

    for row in (results.get("throughput") or {}).get("rows", []):
        name = BROKER_NAMES.get(row["broker"], row["broker"])
        process, enqueue = limit(f"process-{row['broker']}"), limit(f"enqueue-{row['broker']}")
        higher.append((f"process, {name}, {row['workers']} worker(s)", row["process_ratio"], process))
        higher.append((f"enqueue, {name}, {row['workers']} worker(s)", row["enqueue_ratio"], enqueue))
    for row in (results.get("latency") or {}).get("rows", []):
        name = BROKER_NAMES.get(row["broker"], row["broker"])
        lower.append((f"start latency p99, {name}", row["p99_ratio"], limit("latency-p99")))
    for db in (results.get("update") or {}).get("databases", []):
        for m in [*db.get("scaling", {}).get("runs", []), db.get("large")]:
            if m:
                label = f"update, {db['database']}, {m['actions']:,} actions, {m['consumers']} consumer(s)"
                lower.append((label, m["ratio"], limit(f"update-{db['database']}")))
    return higher, lower


def _panel(title: str, items: list[Bar], top: int, scale_max: float) -> list[str]:
    out = [f'<text x="10" y="{top - 14}" class="title">{escape(title)}</text>']
    x0 = LABEL

    def x(value: float) -> float:
        return x0 + PLOT * min(value, scale_max) / scale_max

    height = len(items) * (BAR + GAP)
    steps = 4
    for i in range(steps + 1):
        value = scale_max * i / steps
        out.append(f'<line x1="{x(value):.1f}" y1="{top - 4}" x2="{x(value):.1f}" y2="{top + height}" class="grid"/>')
        out.append(f'<text x="{x(value):.1f}" y="{top + height + 12}" class="tick">{value:g}</text>')
    for i, (label, s, target) in enumerate(items):
        y = top + i * (BAR + GAP)
        out.append(f'<text x="{x0 - 6}" y="{y + BAR - 4}" class="label">{escape(label)}</text>')
        median = s.get("median")
        if median is None:
            out.append(f'<text x="{x0 + 4}" y="{y + BAR - 4}" class="value">not measured</text>')
            continue
        held = median >= target if "higher" in title else median <= target
        cls = "held" if held else "missed"
        out.append(f'<rect x="{x0}" y="{y}" width="{x(median) - x0:.1f}" height="{BAR}" class="{cls}"/>')
        if s.get("min") is not None and s["min"] != s["max"]:
            low, high, middle = x(s["min"]), x(s["max"]), y + BAR / 2
            out.append(f'<line x1="{low:.1f}" y1="{middle}" x2="{high:.1f}" y2="{middle}" class="whisker"/>')
        out.append(f'<line x1="{x(target):.1f}" y1="{y - 2}" x2="{x(target):.1f}" y2="{y + BAR + 2}" class="target"/>')
        out.append(f'<text x="{x(median) + 4:.1f}" y="{y + BAR - 4}" class="value">{median:.2f}</text>')
    return out


def svg(results: dict[str, Any]) -> str:
    higher, lower = bars(results)
    parts: list[str] = []
    top = PANEL_TOP
    if higher:
        parts += _panel("Full stack / plain huey, same run (higher is better; red line: target)", higher, top, 1.2)
        top += len(higher) * (BAR + GAP) + 60
    if lower:
        worst = max((s.get("max") or s.get("median") or 0 for _, s, _ in lower), default=1.5)
        scale = max(2.0, round(worst + 0.5))
        parts += _panel("Full stack / plain huey or one UPDATE, same run (lower is better)", lower, top, scale)
        top += len(lower) * (BAR + GAP) + 40
    height = top
    style = (
        "text{font-family:sans-serif;font-size:11px;fill:#222}.title{font-size:13px;font-weight:bold}"
        ".label{text-anchor:end}.tick{text-anchor:middle;fill:#666;font-size:10px}.grid{stroke:#ddd}"
        ".held{fill:#4a8f5a}.missed{fill:#c8763a}.whisker{stroke:#222;stroke-width:1.5}"
        ".target{stroke:#d00;stroke-width:2}.value{font-size:10px}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="benchmark ratios">'
        f"<style>{style}</style>"
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>' + "".join(parts) + "</svg>\n"
    )
