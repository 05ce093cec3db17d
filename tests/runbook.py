"""docs/deploy.md's shell blocks, read from the document and run line by line in a container.

A block the test executes is marked in the Markdown, on the line before its fence::

    <!-- runbook-test: install -->
    ```sh
    ...
    ```

so the test runs what the document says, and a changed document changes the test. A line
the test cannot run as written (an interactive editor, a package the container's root file
system already holds) has a stand-in, named in the test with the reason; a stand-in or a
substitution whose line is no longer in the block fails the test instead of going stale.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.nspawn import Container

MARKED_BLOCK = re.compile(
    r"^[ \t]*<!-- runbook-test: (?P<name>[\w-]+) -->[ \t]*\n"
    r"(?P<indent>[ \t]*)```[\w-]*[ \t]*\n(?P<body>.*?)\n(?P=indent)```",
    re.M | re.S,
)


def marked_blocks(markdown: str) -> dict[str, str]:
    """Every marked block's text by name (dedented: blocks inside list items are indented)."""
    found: dict[str, str] = {}
    for match in MARKED_BLOCK.finditer(markdown):
        name = match.group("name")
        assert name not in found, f"two blocks are marked runbook-test: {name}"
        found[name] = textwrap.dedent(match.group("indent") + match.group("body"))
    return found


def without_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def command_lines(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments, blank lines left out."""
    commands: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append(without_comment(" ".join((pending + line).split()) if pending else line))
        pending = ""
    assert not pending, f"a continued line ends the block: {pending!r}"
    return commands


def settings_lines(block: str) -> dict[str, str]:
    """``KEY=value`` lines of a block (an env file), in order."""
    pairs: dict[str, str] = {}
    for line in block.splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            pairs[match.group(1)] = match.group(2).strip()
    return pairs


class Runbook:
    """The marked blocks of one Markdown document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blocks = marked_blocks(path.read_text())

    def block(self, name: str) -> str:
        assert name in self.blocks, f"{self.path.name} has no block marked runbook-test: {name}"
        return self.blocks[name]

    def commands(self, name: str) -> list[str]:
        return command_lines(self.block(name))

    def settings(self, name: str) -> dict[str, str]:
        return settings_lines(self.block(name))


class Shell:
    """An operator's root shell on the server: one line at a time, aliases kept.

    Each line runs in a fresh ``bash`` (in the container, with systemd's PATH) that first
    re-defines the aliases earlier lines defined, with alias expansion on, as in the
    interactive shell the runbook is written for.
    """

    def __init__(self, container: Container) -> None:
        self.container = container
        self.aliases: list[str] = []
        self.transcript: list[str] = []
        self.last_output = ""

    def run(self, line: str, expect: int | None = 0, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        script = "\n".join(["shopt -s expand_aliases", *self.aliases, line])
        started = time.monotonic()
        result = self.container.run(script, timeout=timeout, check=False)
        took = time.monotonic() - started
        self.transcript.append(f"# {line}\n{result.stdout}{result.stderr}# exit {result.returncode}, {took:.1f}s")
        self.last_output = result.stdout
        if expect is not None:
            assert result.returncode == expect, (
                f"runbook line exited {result.returncode}, expected {expect}: {line}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        if re.match(r"^alias \S+=", line):
            self.aliases.append(line)
        return result


def follow(
    shell: Shell,
    runbook: Runbook,
    name: str,
    *,
    stand_ins: Mapping[str, Callable[[str], object]] | None = None,
    replace: Mapping[str, str] | None = None,
    expect: Mapping[str, int] | None = None,
    timeout: float = 600,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the block ``name`` line by line; returns each line's result by its text (as written).

    ``stand_ins``: line -> what the test does instead (called with the line).
    ``replace``: placeholder -> value, substituted in every line.
    ``expect``: line -> exit status other than 0.
    """
    stand_ins = dict(stand_ins or {})
    replace = dict(replace or {})
    expect = dict(expect or {})
    lines = runbook.commands(name)
    for key, what in ((stand_ins, "stand-in"), (expect, "expected exit status")):
        stale = [line for line in key if line not in lines]
        assert not stale, f"{what} for lines no longer in block {name!r}: {stale}\nthe block: {lines}"
    unused = [placeholder for placeholder in replace if not any(placeholder in line for line in lines)]
    assert not unused, f"placeholders no longer in block {name!r}: {unused}"
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for line in lines:
        if line in stand_ins:
            stand_ins[line](line)
            continue
        command = line
        for placeholder, value in replace.items():
            command = command.replace(placeholder, value)
        results[line] = shell.run(command, expect=expect.get(line, 0), timeout=timeout)
    return results
