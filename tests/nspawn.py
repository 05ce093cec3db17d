"""A real systemd as PID 1 of a container: a Debian root file system booted with systemd-nspawn.

What the tests need from it, and how each works on a host without systemd:

* The root file system comes from ``debootstrap --variant=minbase`` (about a minute and
  400 MB) and is cached as a tarball keyed by the suite, the package list and the mirror
  (:func:`rootfs_tarball`); each boot unpacks a fresh copy in seconds and deletes it after.
* ``systemd-nspawn -b --register=no --keep-unit --console=pipe`` boots it: there is no
  system bus to register with, and the container shares the host's network, so it reaches
  the Redis, PostgreSQL and SMTP servers on 127.0.0.1. nspawn puts the container's
  cgroups (``payload``/``supervisor``) under its own cgroup, so each container is started in
  a cgroup of its own: two test runs at once must not share one tree.
* pip in the container reaches PyPI the way this host's pip does (:func:`configure_pip`).
* ``machinectl`` and ``systemd-run -M`` need systemd on the host; commands enter the
  container with ``nsenter -t <its PID 1> -a`` instead, with a clean environment.
* The container lives at most :data:`LIFETIME` seconds (``timeout`` around nspawn), so a
  test run killed hard does not leave it running; :meth:`Container.stop` ends it, and only
  it, and removes what it left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

SUITE = "bookworm"
#: What the runbook needs beyond minbase: systemd to boot; the packages its apt-get line
#: names (but Redis and PostgreSQL: the host's serve); sudo and adduser for its commands.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "git", "procps", "sudo", "adduser")
#: Bump to rebuild cached root file systems after changing how they are made.
RECIPE = 1
#: The longest a container may live, whatever happens to the test run that booted it.
LIFETIME = 1800
#: systemd's PATH for system services; commands in the container get it and nothing else.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "timeout", "tar")
INSTALL_HINT = "apt-get install --no-install-recommends systemd-container debootstrap"


class ContainerError(RuntimeError):
    """The machine cannot build or boot a container (as opposed to a failing test step)."""


def cache_dir() -> Path:
    """Where the root file system tarball is kept between runs."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "meingym-tasks" / "nspawn"


def problem() -> str | None:
    """Why this machine cannot boot a container, or None."""
    if os.geteuid() != 0:
        return "booting a container with systemd-nspawn needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        hint = f" (Debian: {INSTALL_HINT})" if {"systemd-nspawn", "debootstrap"} & set(missing) else ""
        return f"{', '.join(missing)} not found on PATH{hint}"
    if not Path("/sys/fs/cgroup").is_dir() or not cgroup_hierarchies():
        return "no cgroup file system at /sys/fs/cgroup"
    return None


def debian_mirror() -> str:
    """The Debian mirror apt uses (deb822 ``URIs:`` or a one-line ``deb`` entry), else deb.debian.org."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            if re.search(r"^Suites:.*\b" + SUITE + r"\b", stanza, re.M) and not re.search(
                r"^Enabled:\s*no", stanza, re.M | re.I
            ):
                match = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if match and "security" not in match.group(1):
                    return match.group(1)
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
                if match:
                    return match.group(1)
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``: two test runs build the same cache once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs_tarball(log: Path, timeout: float = 900) -> Path:
    """The cached root file system tarball, built with debootstrap on first use."""
    mirror = debian_mirror()
    key = hashlib.sha256(json.dumps([RECIPE, SUITE, "minbase", sorted(PACKAGES), mirror]).encode()).hexdigest()
    tarball = cache_dir() / f"{SUITE}-{key[:16]}.tar"
    with _locked(cache_dir() / "rootfs.lock"):
        if tarball.exists():
            return tarball
        build = cache_dir() / f"build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        root = build / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            mirror,
        ]
        try:
            with log.open("ab") as out:
                out.write(f"$ {shlex.join(command)}\n".encode())
                out.flush()
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            if done.returncode != 0:
                raise ContainerError(f"debootstrap from {mirror} failed (exit {done.returncode}); see {log}")
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()  # apt-get clean: a third of the size
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        for old in cache_dir().glob(f"{SUITE}-*.tar"):
            if old != tarball:
                old.unlink()  # a changed recipe or package list: the old tarball is dead weight
    return tarball


def cgroup_hierarchies() -> list[Path]:
    """This process's cgroup in each hierarchy systemd uses: cgroup2, and name=systemd (hybrid)."""
    mine = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0":
            mine["unified"] = path
        elif controllers == "name=systemd":
            mine["systemd"] = path
    found = []
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup2 only
        found.append(root / mine.get("unified", "/").lstrip("/"))
    else:
        if (root / "unified/cgroup.controllers").exists() and "unified" in mine:
            found.append(root / "unified" / mine["unified"].lstrip("/"))
        if (root / "systemd/cgroup.procs").exists() and "systemd" in mine:
            found.append(root / "systemd" / mine["systemd"].lstrip("/"))
    return found


def _remove_cgroup_tree(top: Path) -> None:
    """rmdir every empty cgroup below ``top`` and ``top`` itself (cgroups are removed with rmdir)."""
    if not top.is_dir():
        return
    for directory, _subdirs, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [mount for mount in mounts if (mount + "/").startswith(prefix)]


class Container:
    """One booted container: run commands in it, read its journal, stop it."""

    def __init__(self, name: str, root: Path, log: Path) -> None:
        self.name = name
        self.root = root
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the host PID of the container's PID 1 (systemd)
        self.cgroups: list[Path] = []

    # ----------------------------------------------------------------- life cycle

    def unpack(self, tarball: Path) -> None:
        """A fresh root file system from the cached tarball, named like a freshly installed server."""
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(self.root), "--numeric-owner", "-xf", str(tarball)], check=True)
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n::1\tlocalhost\n")

    def boot(self, read_only: dict[Path, str], timeout: float = 120) -> None:
        """Boot systemd in the container and wait until ``systemctl is-system-running`` says running."""
        procs = []
        for hierarchy in cgroup_hierarchies():
            group = hierarchy / f"meingym-nspawn-{self.name}"
            with contextlib.suppress(OSError):
                group.mkdir()
                self.cgroups.append(group)
                procs.append(group / "cgroup.procs")
        nspawn = ["systemd-nspawn", "-q", "-D", str(self.root), "-M", self.name, "-b"]
        nspawn += ["--register=no", "--keep-unit", "--console=pipe"]
        nspawn += [f"--bind-ro={host}:{inside}" for host, inside in read_only.items()]
        # Enter the cgroup first (sh writes its own PID, then becomes timeout, then nspawn).
        enter = "".join(f"echo $$ > {shlex.quote(str(path))}; " for path in procs)
        argv = ["sh", "-c", enter + 'exec "$@"', "sh", "timeout", "--kill-after=30", str(LIFETIME), *nspawn]
        with self.log.open("ab") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self.proc.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise ContainerError(f"the container's systemd did not start within {timeout}s: {self.tail()}")
            self.leader = self._find_leader()
            time.sleep(0.1)
        state = ""
        while state not in ("running", "degraded"):
            if self.proc.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise ContainerError(f"the container did not finish booting within {timeout}s (state {state!r})")
            time.sleep(0.2)
            state = self.run("systemctl is-system-running", check=False, timeout=30).stdout.strip()
        if state == "degraded":
            failed = self.run("systemctl --failed --no-legend --plain", check=False).stdout
            raise ContainerError(f"the container booted degraded; failed units:\n{failed}")

    def _find_leader(self) -> int:
        """The process whose PID in its own namespace is 1, below our nspawn."""
        assert self.proc is not None
        parents = {self.proc.pid}
        for _ in range(4):  # timeout -> systemd-nspawn -> (container's PID 1)
            children = set()
            for status in Path("/proc").glob("[0-9]*/status"):
                with contextlib.suppress(OSError):
                    text = status.read_text()
                    ppid = int(re.search(r"^PPid:\s*(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
                    if ppid in parents:
                        nspid = re.search(r"^NSpid:\s*(.*)$", text, re.M)
                        if nspid and nspid.group(1).split()[-1] == "1" and len(nspid.group(1).split()) > 1:
                            return int(status.parent.name)
                        children.add(int(status.parent.name))
            if not children:
                return 0
            parents = children
        return 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """Power the container off (SIGTERM to nspawn halts it); kill it if that takes too long.

        Only this container's processes are signalled: the ``timeout`` process we started
        (which passes the signal to its nspawn), and failing that the container's PID 1,
        whose death ends every process of its PID namespace.
        """
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.leader:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        for group in self.cgroups:
            _remove_cgroup_tree(group)
        if self.root.exists():
            mounted = _mounts_below(self.root)
            if mounted:
                raise ContainerError(f"not removing {self.root}: still mounted below it: {mounted}")
            shutil.rmtree(self.root)

    # ----------------------------------------------------------------- inside

    def run(
        self,
        script: str,
        *,
        input: str | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a bash script in the container as root, as a login on the server would.

        The environment is systemd's PATH, HOME and a UTF-8 locale, nothing of the test's.
        """
        argv = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}", "HOME=/root"]
        argv += ["LANG=C.UTF-8", "TERM=dumb", "bash", "-o", "pipefail", "-c", script]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the container, exit {result.returncode}: {script}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr}"
            )
        return result

    def systemctl(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return self.run(shlex.join(["systemctl", *args]), check=check, timeout=timeout).stdout.strip()

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        out = self.systemctl("show", unit, *(f"--property={name}" for name in properties))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        """``journalctl -b ARGS``' output ("" when nothing matches: journalctl then exits 1)."""
        result = self.run(shlex.join(["journalctl", "-b", "--no-pager", "--quiet", *args]), timeout=60, check=False)
        if result.returncode not in (0, 1) or (result.returncode == 1 and result.stdout.strip()):
            raise AssertionError(f"journalctl {shlex.join(args)}: exit {result.returncode}: {result.stderr}")
        return result.stdout if result.returncode == 0 else ""

    def read(self, path: str) -> str:
        return self.run(shlex.join(["cat", path])).stdout

    def append(self, path: str, text: str) -> None:
        self.run(f"cat >> {shlex.quote(path)}", input=text)


def unique_name(prefix: str = "meingym") -> str:
    """A machine (and host) name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


#: pip settings that make sense on another machine of the same network (paths on this
#: host's disk, such as file:// indexes, find-links and constraints, do not).
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy", "default-timeout", "timeout", "retries")


def host_pip_config() -> dict[str, str]:
    """The effective pip settings of this host, from ``pip config list`` (files and PIP_* variables)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    found: dict[str, str] = {}
    for line in listed.splitlines():  # global.cert='...' then :env:.cert='...' (the environment wins)
        match = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line)
        if match:
            found[match.group(1)] = match.group(2)
    for variable in ("HTTPS_PROXY", "https_proxy"):
        if os.environ.get(variable) and "proxy" not in found:
            found["proxy"] = os.environ[variable]
    return found


def configure_pip(root: Path) -> str:
    """Give the container's pip this host's way to PyPI; returns the /etc/pip.conf written.

    The certificate bundle pip trusts here (it may hold a proxy's CA) is copied in;
    settings naming files of this host (file:// indexes, find-links) are left out.
    """
    host = host_pip_config()
    lines = ["[global]"]
    cert = host.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if cert and Path(cert).is_file():
        inside = "/etc/ssl/certs/meingym-test-host-ca.pem"
        shutil.copyfile(cert, root / inside.lstrip("/"))
        lines.append(f"cert = {inside}")
    for key in PIP_KEYS:
        value = host.get(key, "")
        kept = " ".join(word for word in value.split() if not word.startswith(("file:", "/")))
        if kept:
            lines.append(f"{key} = {kept}")
    text = "\n".join(lines) + "\n"
    (root / "etc/pip.conf").write_text(text)
    return text
