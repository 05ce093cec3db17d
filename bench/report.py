"""The results as tables (terminal and Markdown), the targets, and the block in docs/performance.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.stats import Stat

DOCS_BEGIN = "<!-- bench:results:begin (written by `make bench`; edit the text around it, not inside) -->"
DOCS_END = "<!-- bench:results:end -->"

#: name, what, limit, direction ("min": measured must be >= limit, "max": <= limit). Ratios are full/plain
#: (or job/one UPDATE) of the same run; each case's figure is the median of the runs.
TARGETS = (
    ("process-redis", "processing full/plain, Redis broker (1 and 4 workers)", 1.00, "min"),
    ("process-sqlite", "processing full/plain, SQLite broker (1 and 4 workers)", 0.90, "min"),
    ("enqueue", "enqueue full/plain, every Redis and SQLite pairing", 0.95, "min"),
    ("process-postgres", "processing full/plain, PostgreSQL broker (1 and 4 workers)", 0.85, "min"),
    ("enqueue-postgres", "enqueue full/plain, PostgreSQL broker", 0.85, "min"),
    ("latency-p99", "start latency p99 full/plain, one idle consumer, each broker", 1.2, "max"),
    ("update-sqlite", "update-all-actions / one UPDATE, SQLite, largest run", 1.05, "max"),
    ("update-postgresql", "update-all-actions / one UPDATE, PostgreSQL, largest run", 1.5, "max"),
    ("update-rss", "update-all-actions consumer peak RSS (MB)", 150.0, "max"),
    ("api-list-p99", "GET /api/jobs p99 (ms)", 50.0, "max"),
    ("api-post", "POST /api/jobs (requests/s)", 500.0, "min"),
    ("memory-growth", "consumer RSS growth over the memory run (MB)", 10.0, "max"),
)

BROKER_NAMES = {"redis": "Redis", "sqlite": "SQLite", "postgres": "PostgreSQL"}


def limit(name: str) -> float:
    """The limit of target ``name`` (``enqueue-redis`` and ``enqueue-sqlite`` are ``enqueue``)."""
    aliases = {"enqueue-redis": "enqueue", "enqueue-sqlite": "enqueue", "process-postgresql": "process-postgres"}
    name = aliases.get(name, name)
    for target, _, value, _ in TARGETS:
        if target == name:
            return value
    raise KeyError(name)


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


def _load(row: dict[str, Any]) -> str:
    loads = [v for stack in ("plain", "full") for v in (row[stack].get("load") or {}).get("runs", []) if v is not None]
    return f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"


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
                f"{stat(plain.get('enqueue_cpu_us_per_job'))} → {stat(full.get('enqueue_cpu_us_per_job'))}",
                stat(plain["process_per_s"]),
                stat(full["process_per_s"]),
                f"**{stat(row['process_ratio'], 2)}**",
                f"{stat(plain.get('consumer_cpu_us_per_job'))} → {stat(full.get('consumer_cpu_us_per_job'))}",
                stat(row.get("cpu_ratio"), 2),
                commands,
                _load(row) if "load" in plain else "–",
            ]
        )
    headers = [
        "broker",
        "workers",
        "enqueue plain /s",
        "enqueue full /s",
        "enqueue full/plain",
        "producer CPU µs/job plain → full",
        "process plain /s",
        "process full /s",
        "process full/plain",
        "consumer CPU µs/job plain → full",
        "consumer CPU plain/full",
        "Redis cmds/job plain → full",
        "load (1 min)",
    ]
    parts = [f"N = {result['jobs']:,} no-op jobs per measurement.", table(headers, rows)]
    statements = result.get("statements") or {}
    if statements:
        srows = []
        for broker, stacks in statements.items():
            cells = []
            for label in ("broker", "registry"):
                for kind in ("statements", "commits"):
                    values = [(stacks[s].get("per_job") or {}).get(label, {}).get(kind) for s in ("plain", "full")]
                    cells.append(" → ".join("–" if v is None else f"{v:.2f}" for v in values))
            srows.append([f"{broker} (registry: {'sqlite' if broker == 'sqlite' else 'postgresql'})", *cells])
        jobs = next(iter(statements.values()))["plain"]["jobs"]
        parts += [
            f"SQL per job in the consumer, plain → full (counted in a separate run of {jobs:,} jobs, 1 worker):",
            table(
                [
                    "broker",
                    "broker statements",
                    "broker commits",
                    "registry statements",
                    "registry commits",
                ],
                srows,
            ),
        ]
    floor = result.get("raw_floor")
    if floor:
        parts.append(
            f"Raw floor (redis-py, same payloads): LPUSH {stat(floor['lpush_per_s'])} /s, "
            f"BRPOP {stat(floor['brpop_per_s'])} /s, 2 commands per item."
        )
    return parts


def latency_tables(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "failed":
        return [f"Section failed: `{result.get('error', '').splitlines()[-1]}`"]
    rows = []
    for row in result["rows"]:
        plain, full = row["plain"], row["full"]
        rows.append(
            [
                f"{row['broker']} (registry: {row['registry']})",
                stat(plain["p50_ms"], 2),
                stat(full["p50_ms"], 2),
                stat(row["p50_ratio"], 2),
                stat(plain["p99_ms"], 2),
                stat(full["p99_ms"], 2),
                f"**{stat(row['p99_ratio'], 2)}**",
                _load(row),
            ]
        )
    headers = [
        "broker",
        "p50 plain (ms)",
        "p50 full (ms)",
        "p50 full/plain",
        "p99 plain (ms)",
        "p99 full (ms)",
        "p99 full/plain",
        "load (1 min)",
    ]
    low, high = result["pause_ms"]
    return [
        f"{result['samples']:,} jobs per measurement, each enqueued {low:g}–{high:g} ms after the previous one "
        f"started, to one consumer with {result['workers']} thread worker: from the producer's call to the "
        "job's first line.",
        table(headers, rows),
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


def _case(label: str, s: Stat | None) -> str:
    return f"{label}: {stat(s, 2)}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the worst median it applies to, and whether it holds."""
    measured: dict[str, float | None] = {}
    detail: dict[str, str] = {}

    def record(name: str, cases: list[tuple[str, Stat | None]], direction: str) -> None:
        cases = [(label, s) for label, s in cases if s]
        if not cases:
            return
        measured[name] = _worst([(s or {}).get("median") for _, s in cases], direction)
        detail[name] = ", ".join(_case(label, s) for label, s in cases)

    tp = results.get("throughput") or {}
    if tp.get("rows"):
        for broker in ("redis", "sqlite", "postgres"):
            rows = [r for r in tp["rows"] if r["broker"] == broker]
            record(f"process-{broker}", [(f"{r['workers']} worker(s)", r["process_ratio"]) for r in rows], "min")
        pairs = [r for r in tp["rows"] if r["broker"] in ("redis", "sqlite")]
        record("enqueue", [(f"{r['broker']} w={r['workers']}", r["enqueue_ratio"]) for r in pairs], "min")
        pg = [r for r in tp["rows"] if r["broker"] == "postgres"]
        record("enqueue-postgres", [(f"w={r['workers']}", r["enqueue_ratio"]) for r in pg], "min")
    lat = results.get("latency") or {}
    if lat.get("rows"):
        cases = [(BROKER_NAMES.get(r["broker"], r["broker"]), r["p99_ratio"]) for r in lat["rows"]]
        record("latency-p99", cases, "max")
    up = results.get("update") or {}
    if up.get("databases"):
        large = [(db["database"], db["large"]) for db in up["databases"] if db.get("large")]
        for name, m in large:
            record(f"update-{name}", [(f"{m['actions']:,} actions", m["ratio"])], "max")
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
    for name, what, value_limit, direction in TARGETS:
        value = measured.get(name)
        held = None if value is None else (value >= value_limit if direction == "min" else value <= value_limit)
        out.append(
            {
                "name": name,
                "what": what,
                "target": f"{'>=' if direction == 'min' else '<='} {value_limit:g}",
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
    return table(["target", "limit", "measured (worst median)", "per case: median (min–max)", "result"], rows)


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
    loads = section_loads(results)
    if loads:
        parts.append(f"Load average (1 min) at the end of each section: {loads}.")
    parts += ["### Targets", targets_table(results["targets"])]
    sections = (
        ("1. Job throughput", "throughput", throughput_tables),
        ("2. Start latency", "latency", latency_tables),
        ("3. update-all-actions", "update", update_tables),
        ("4. API", "api", api_tables),
        ("5. Memory", "memory", memory_tables),
    )
    for title, key, render in sections:
        if key in results:
            parts += [f"### {title}", *render(results[key])]
    parts.append("![ratios](../bench/results/chart.svg)")
    parts += previous_tables(results.get("previous"))
    return "\n\n".join(parts) + "\n"


def section_loads(results: dict[str, Any]) -> str:
    found = []
    for key in ("throughput", "latency", "update", "api", "memory"):
        section = results.get(key)
        if isinstance(section, dict) and section.get("load_average_after"):
            found.append(f"{key} {section['load_average_after'][0]:.2f}")
    return ", ".join(found)


def previous_tables(previous: dict[str, Any] | None) -> list[str]:
    """The earlier run's targets (its own limits) and throughput, as it published them, to compare."""
    if not previous:
        return []
    machine = previous.get("machine", {})
    parts = [
        f"### Previous run, for comparison: commit {machine.get('commit', '?')}, {previous.get('finished_at', '?')}",
        f"`{previous.get('command', '?')}`, {previous.get('config', {}).get('runs', '?')} runs per figure; "
        f"load average {machine.get('load_average', '?')} at the start and {previous.get('load_average_end', '?')} "
        "at the end. Its targets, with the limits of that time:",
    ]
    if previous.get("targets"):
        parts.append(targets_table(previous["targets"]))
    if isinstance(previous.get("throughput"), dict) and previous["throughput"].get("rows"):
        parts += throughput_tables(previous["throughput"])
    return parts


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
