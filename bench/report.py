"""The results as tables (terminal and Markdown), the targets, and the block in docs/performance.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.stats import Stat

DOCS_BEGIN = "<!-- bench:results:begin (written by `make bench`; edit the text around it, not inside) -->"
DOCS_END = "<!-- bench:results:end -->"

#: name, what, limit, direction ("min": measured must be >= limit, "max": <= limit)
TARGETS = (
    ("process-redis", "full-stack processing / plain huey, Redis", 0.85, "min"),
    ("process-sqlite", "full-stack processing / plain huey, SQLite broker", 0.75, "min"),
    ("enqueue", "full-stack enqueue / plain huey", 0.85, "min"),
    ("update-ratio", "update-all-actions / single UPDATE", 1.5, "max"),
    ("update-rss", "update-all-actions consumer peak RSS (MB)", 150.0, "max"),
    ("api-list-p99", "GET /api/jobs p99 (ms)", 50.0, "max"),
    ("api-post", "POST /api/jobs (requests/s)", 500.0, "min"),
    ("memory-growth", "consumer RSS growth over the memory run (MB)", 10.0, "max"),
)


# --------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def stat(s: Stat | None, digits: int = 0) -> str:
    """``median (min-max)``, or just the median when there was one run."""
    if not s or s.get("median") is None:
        return "n/a"
    median, low, high = s["median"], s["min"], s["max"]
    if len(s.get("runs", [])) <= 1 or low == high:
        return num(median, digits)
    return f"{num(median, digits)} ({num(low, digits)}–{num(high, digits)})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def throughput_tables(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "failed":
        return [f"Section failed: `{result.get('error', '').splitlines()[-1]}`"]
    rows = []
    for row in result["rows"]:
        plain, full = row["plain"], row["full"]
        commands = "–"
        if "commands_per_job" in plain:
            commands = f"{stat(plain['commands_per_job'], 2)} → {stat(full['commands_per_job'], 2)}"
        rows.append(
            [
                f"{row['broker']} (registry: {row['registry']})",
                str(row["workers"]),
                stat(plain["enqueue_per_s"]),
                stat(full["enqueue_per_s"]),
                f"**{stat(row['enqueue_ratio'], 2)}**",
                stat(plain["process_per_s"]),
                stat(full["process_per_s"]),
                f"**{stat(row['process_ratio'], 2)}**",
                f"{stat(plain.get('consumer_cpu_us_per_job'))} → {stat(full.get('consumer_cpu_us_per_job'))}",
                commands,
            ]
        )
    headers = [
        "broker",
        "workers",
        "enqueue plain /s",
        "enqueue full /s",
        "enqueue full/plain",
        "process plain /s",
        "process full /s",
        "process full/plain",
        "consumer CPU µs/job plain → full",
        "Redis cmds/job plain → full",
    ]
    floor = result["raw_floor"]
    return [
        f"N = {result['jobs']:,} no-op jobs per measurement.",
        table(headers, rows),
        f"Raw floor (redis-py, same payloads): LPUSH {stat(floor['lpush_per_s'])} /s, "
        f"BRPOP {stat(floor['brpop_per_s'])} /s, 2 commands per item.",
    ]


def update_tables(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "failed":
        return [f"Section failed: `{result.get('error', '').splitlines()[-1]}`"]
    rows = []
    for db in result["databases"]:
        measured = [*db.get("scaling", {}).get("runs", []), db.get("large")]
        for m in measured:
            if not m:
                continue
            rows.append(
                [
                    f"{db['database']} (broker: {db['broker']})",
                    num(m["actions"]),
                    f"{m['consumers']} × {m['workers_per_consumer']}",
                    f"{m['batches']} × {num(m['batch_size'])}",
                    stat(m["floor_seconds"], 2),
                    stat(m["job_seconds"], 2),
                    f"**{stat(m['ratio'], 2)}**",
                    stat(m["job_actions_per_s"]),
                    stat(m["consumer_peak_rss_mb"], 1),
                ]
            )
    headers = [
        "database",
        "actions",
        "consumers × workers",
        "batches × ids",
        "floor: one UPDATE (s)",
        "job (s)",
        "job/floor",
        "job actions/s",
        "consumer peak RSS (MB)",
    ]
    return [table(headers, rows)]


def api_tables(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "not yet":
        return [f"Not yet: {result.get('reason')}."]
    if result.get("status") == "failed":
        return [f"Section failed: `{result.get('error', '').splitlines()[-1]}`"]
    rows = [
        [name, stat(v["p50_ms"], 1), stat(v["p99_ms"], 1), str(v["requests"]), str(v["errors"])]
        for name, v in result["latency"].items()
    ]
    post = result["post"]
    lines = [
        f"{num(result['records'])} job records; `uvicorn --workers 2` (with TCP_NODELAY, see below), "
        "one client connection for latency.",
        table(["GET", "p50 (ms)", "p99 (ms)", "requests", "errors"], rows),
        f"POST /api/jobs: **{stat(post['per_s'])} requests/s** with {post['clients']} client threads for "
        f"{post['seconds']:g} s per run ({post['accepted']:,} accepted, {post['rejected']} rejected).",
    ]
    stock = result.get("stock_uvicorn")
    if stock:
        lines.append(
            "Stock `uvicorn --workers 2` (no TCP_NODELAY on accepted sockets, uvicorn issue #3149): "
            f"/healthz p50 {num(stock['healthz']['p50_ms'], 1)} ms, first page p50 "
            f"{num(stock['first page']['p50_ms'], 1)} ms."
        )
    return lines


def memory_tables(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "failed":
        return [f"Section failed: `{result.get('error', '').splitlines()[-1]}`"]
    marks = [str(m) for m in result["marks"]]
    rows = []
    for stack in ("full", "plain"):
        data = result[stack]
        backlog = data.get("registry_backlog_at_last_job")
        drain = data.get("registry_drain_seconds")
        rows.append(
            [stack]
            + [stat(data["rss_mb"][m], 1) for m in marks]
            + [f"**{stat(data['growth_mb'], 1)}**", stat(data["peak_rss_mb"], 1)]
            + ([f"{stat(backlog)} jobs, {stat(drain, 1)} s"] if stack == "full" and backlog else ["–"])
        )
    headers = ["stack"] + [f"RSS after {int(m):,} jobs (MB)" for m in marks] + ["growth (MB)", "peak (MB)"]
    headers.append("registry backlog at the last job, catch-up time")
    return [
        f"One consumer, {result['workers']} thread workers, Redis broker, registry in PostgreSQL.",
        table(headers, rows),
    ]


# --------------------------------------------------------------------------- targets


def _worst(values: list[float | None], direction: str) -> float | None:
    measured = [v for v in values if v is not None]
    if not measured:
        return None
    return min(measured) if direction == "min" else max(measured)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the worst median it applies to, and whether it holds."""
    measured: dict[str, float | None] = {}
    detail: dict[str, str] = {}
    tp = results.get("throughput") or {}
    if tp.get("rows"):
        for broker in ("redis", "sqlite"):
            rows = [r for r in tp["rows"] if r["broker"] == broker]
            measured[f"process-{broker}"] = _worst([r["process_ratio"]["median"] for r in rows], "min")
            detail[f"process-{broker}"] = ", ".join(
                f"{r['workers']} worker(s): {num(r['process_ratio']['median'], 2)}" for r in rows
            )
        measured["enqueue"] = _worst([r["enqueue_ratio"]["median"] for r in tp["rows"]], "min")
        detail["enqueue"] = ", ".join(
            f"{r['broker']} w={r['workers']}: {num(r['enqueue_ratio']['median'], 2)}" for r in tp["rows"]
        )
    up = results.get("update") or {}
    if up.get("databases"):
        large = [(db["database"], db["large"]) for db in up["databases"] if db.get("large")]
        measured["update-ratio"] = _worst([m["ratio"]["median"] for _, m in large], "max")
        detail["update-ratio"] = ", ".join(f"{name}: {num(m['ratio']['median'], 2)}" for name, m in large)
        measured["update-rss"] = _worst([m["consumer_peak_rss_mb"]["max"] for _, m in large], "max")
        detail["update-rss"] = ", ".join(f"{name}: {num(m['consumer_peak_rss_mb']['max'], 1)}" for name, m in large)
    api = results.get("api") or {}
    if api.get("status") == "measured":
        lists = {k: v for k, v in api["latency"].items() if k != "job by id"}
        measured["api-list-p99"] = _worst([v["p99_ms"]["median"] for v in lists.values()], "max")
        detail["api-list-p99"] = ", ".join(f"{k}: {num(v['p99_ms']['median'], 1)}" for k, v in lists.items())
        measured["api-post"] = api["post"]["per_s"]["median"]
    mem = results.get("memory") or {}
    if mem.get("full"):
        measured["memory-growth"] = mem["full"]["growth_mb"]["max"]
        detail["memory-growth"] = f"from {mem['marks'][0]:,} to {mem['marks'][-1]:,} jobs, worst run"
    out = []
    for name, what, limit, direction in TARGETS:
        value = measured.get(name)
        held = None if value is None else (value >= limit if direction == "min" else value <= limit)
        out.append(
            {
                "name": name,
                "what": what,
                "target": f"{'>=' if direction == 'min' else '<='} {limit:g}",
                "measured": value,
                "detail": detail.get(name, ""),
                "held": held,
            }
        )
    return out


def targets_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for t in items:
        held = "not measured" if t["held"] is None else "**held**" if t["held"] else "**not held**"
        value = num(t["measured"], 2) if t["measured"] is not None and t["measured"] < 100 else num(t["measured"])
        rows.append([t["what"], t["target"], value, t["detail"], held])
    return table(["target", "limit", "measured (worst median)", "per case", "result"], rows)


# --------------------------------------------------------------------------- documents


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    pg = machine.get("postgresql_settings", {})
    parts = [
        f"Run {results['finished_at']} of commit {machine.get('commit', '?')} "
        f"({results['mode']}, {results['minutes']:.0f} min): "
        f"`{results['command']}`, {results['config']['runs']} runs per figure, shown as median (min–max).",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {num(machine['memory_mb'])} MB RAM, "
        f"load average {machine['load_average']} at the start and {results.get('load_average_end')} at the end; "
        f"Linux {machine['kernel']}, Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"Redis {machine.get('redis_server', '?')}, PostgreSQL {machine.get('postgresql', '?')} "
        f"(shared_buffers {pg.get('shared_buffers', '?')}, synchronous_commit {pg.get('synchronous_commit', '?')}); "
        f"{packages}.",
    ]
    if results.get("reduced"):
        parts.append(f"Reduced sizes: {results['reduced']}.")
    if results.get("merged"):
        when = ", ".join(f"{s} {results[s].get('measured_at', '?')}" for s in results["merged"])
        parts.append(f"Sections kept from an earlier run of the same command: {when}.")
    parts += ["### Targets", targets_table(results["targets"])]
    sections = (
        ("1. Job throughput", "throughput", throughput_tables),
        ("2. update-all-actions", "update", update_tables),
        ("3. API", "api", api_tables),
        ("4. Memory", "memory", memory_tables),
    )
    for title, key, render in sections:
        if key in results:
            parts += [f"### {title}", *render(results[key])]
    parts.append("![ratios](../bench/results/chart.svg)")
    return "\n\n".join(parts) + "\n"


def update_docs(path: Path, block: str) -> bool:
    """Replace the generated block of ``path``; False when the markers are missing."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(DOCS_BEGIN) + r".*?" + re.escape(DOCS_END), re.DOTALL)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda _: f"{DOCS_BEGIN}\n\n{block}\n{DOCS_END}", text), encoding="utf-8")
    return True


def terminal(results: dict[str, Any]) -> str:
    """A plain-text rendering of the Markdown (the tables read fine as they are)."""
    return markdown(results).replace("**", "")
