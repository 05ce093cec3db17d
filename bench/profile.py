"""``python -m bench.profile FILE [--jobs N] [--top 40] [--match TEXT]``: where a consumer's time went.

Reads the collapsed stacks py-spy wrote for a consumer (``MEINGYM_BENCH_PROFILE=DIR``
during a bench run, see :func:`bench.child.profile`) and prints, per function,
the share of the busy samples whose stack contains it (inclusive) and in which
it was the innermost frame (self). With ``--jobs`` and the sampling rate the
shares become microseconds per job. Idle threads are not sampled (py-spy's
default), so the shares are of the time some thread was running Python.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    """``function (file)`` per frame, outermost first, without line numbers and thread names."""
    out = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match is None:
            continue
        path = match["file"]
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            if marker in path:
                path = path.split(marker, 1)[1]
        out.append(f"{match['function']} ({path})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--jobs", type=int, help="jobs the consumer ran while sampled: shares become µs per job")
    parser.add_argument("--rate", type=int, default=500, help="py-spy's samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        if args.match and args.match not in stack:
            continue
        count = int(count_text)
        total += count
        thread = stack.split(";", 1)[0]
        threads[thread.split(" (")[0]] += count
        names = frames(stack)
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    if not total:
        print("no samples")
        return

    def show(count: int) -> str:
        if args.jobs:
            return f"{count / args.rate / args.jobs * 1e6:8.1f} µs/job"
        return f"{100 * count / total:6.1f} %"

    print(f"{total} samples" + (f", {total / args.rate / args.jobs * 1e6:.0f} µs/job" if args.jobs else ""))
    print("\nthreads:")
    for name, count in threads.most_common(10):
        print(f"  {show(count)}  {name}")
    print("\ninclusive:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {show(count)}  {name}")
    print("\nself:")
    for name, count in own.most_common(args.top // 2):
        print(f"  {show(count)}  {name}")


if __name__ == "__main__":
    main()
