"""Several test hosts on one machine: Linux network namespaces on a private LAN of our own.

``Network(["a", "b"])`` builds, and on exit tears down (also when the test fails):

* a namespace ``mg<N>-lan`` holding a bridge, the LAN's switch (it has no address);
* a veth pair from the root namespace, the "server" host where Redis, PostgreSQL and the test
  itself run, to the bridge; its root end is ``10.213.<N>.1/24``;
* a namespace per test host (``mg<N>-a``...) with a veth pair to the bridge, its end ``eth0`` at
  ``10.213.<N>.11``, ``.12``...

Every address is on a veth end made here, and no namespace has a route anywhere else, so the
hosts' traffic stays on this LAN. ``N`` is picked free (no address or route of the machine in
``10.213.<N>.0/24``) and held with a lock file, so two test sessions on one machine never share
one; leftovers of a killed run under the same ``N`` are removed first.

A host runs commands in its namespace under its own host name (a UTS namespace of its own, so a
consumer's ``host:pid`` says which host it is), and can be cut off (:meth:`Host.cut`: its switch
port goes down, every packet to and from it is lost, as when a cable or a switch fails), healed,
or given a lossy link (:meth:`Host.lose`: nftables in its namespace drops that share of packets
both ways; Debian's ``nftables`` package). Loss and delay would be ``tc qdisc ... netem``, but
kernels built without ``sch_netem`` (this project's CI machine) have neither, so loss comes from
nftables and :class:`DelayRelay` adds the delay to the host's TCP streams: a relay on the server
that holds each chunk for the delay, per direction.

Also here, for what the hosts reach: a private ``redis-server`` (:class:`RedisServer`) and a
private PostgreSQL cluster (:class:`PostgresCluster`, ``initdb`` into a temporary folder, owned
by the ``postgres`` user as PostgreSQL requires) listening on the server's LAN address.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from tests.helpers import REQUIRE_SERVICES, free_port

PREFIX = "10.213"
LOCK_DIR = Path("/run/lock/meingym-tasks-netns")


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=20, check=check)


def netns_problem() -> str | None:
    """Why this machine cannot build test hosts (None when it can): root, ``ip netns``, ``unshare``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed (apt-get install iproute2 util-linux)"
    probe = f"mgprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


_problem: list[str | None] = []


def require_netns(loss: bool = False) -> None:
    """Skip (or, with MEINGYM_TEST_REQUIRE_SERVICES=1, fail) when the machine cannot build test hosts.

    ``loss``: the test also drops packets (:meth:`Host.lose`), which needs nftables.
    """
    if not _problem:
        _problem.append(netns_problem())
    problem = _problem[0]
    if problem is None and loss and shutil.which("nft") is None:
        problem = "'nft' is not installed (apt-get install nftables)"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


class Host:
    """One test host: a network namespace on the LAN, with an address and a host name of its own."""

    def __init__(self, network: Network, name: str, address: str, port: str) -> None:
        self.network = network
        self.name = name
        self.hostname = f"host-{name}"
        self.netns = f"mg{network.number}-{name}"
        self.address = address
        self._port = port  # its veth end on the bridge, in the LAN namespace
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on this host: in its namespace, under its host name (same PID as ``argv``)."""
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv,
        ]  # fmt: skip

    def start(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` on this host, output to ``log``; it is killed at teardown if still running."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.command(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, check=False)

    def cut(self) -> None:
        """Cut the host off the LAN: its switch port goes down; packets both ways are lost, silently."""
        _ip("link", "set", self._port, "down", netns=self.network.lan)

    def heal(self) -> None:
        _ip("link", "set", self._port, "up", netns=self.network.lan)

    def lose(self, percent: int) -> None:
        """Drop ``percent`` % of the host's packets, in and out, at random (nftables ``numgen``)."""
        self.clear_loss()
        rules = (
            "table inet meingym_chaos {\n"
            " chain input {\n  type filter hook input priority 0; policy accept;\n"
            f'  iifname "eth0" numgen random mod 100 < {percent} drop\n }}\n'
            " chain output {\n  type filter hook output priority 0; policy accept;\n"
            f'  oifname "eth0" numgen random mod 100 < {percent} drop\n }}\n'
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "-f", "-"], input=rules, text=True, check=True, timeout=20
        )

    def clear_loss(self) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "delete", "table", "inet", "meingym_chaos"],
            capture_output=True,
            timeout=20,
            check=False,
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGINT (huey's graceful stop) to what runs here, then SIGKILL to whatever is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Network:
    """A private LAN of test hosts (see the module docstring); a context manager that tears it down."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.names = list(hosts)
        self.number = -1
        self.hosts: dict[str, Host] = {}
        self._lock: IO[str] | None = None

    @property
    def lan(self) -> str:
        return f"mg{self.number}-lan"

    @property
    def server_address(self) -> str:
        """The root namespace's address on the LAN: where Redis and PostgreSQL listen for the hosts."""
        return f"{PREFIX}.{self.number}.1"

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        self.number = self._claim_subnet()
        try:
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.kill()
        self._remove(self.number)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # -- building ----------------------------------------------------------------------------------

    def _claim_subnet(self) -> int:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        used = _ip("-4", "addr").stdout + _ip("-4", "route", "show", "table", "all").stdout
        for number in range(10, 250):
            if f"{PREFIX}.{number}." in used:
                continue
            lock = open(LOCK_DIR / f"{number}.lock", "w")  # noqa: SIM115 (held while the network lives)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._lock = lock
            self._remove(number)  # leftovers of a run that was killed before its teardown
            return number
        raise RuntimeError(f"no free subnet {PREFIX}.N.0/24 for test hosts")

    def _build(self) -> None:
        n = self.number
        _ip("netns", "add", self.lan)
        _ip("link", "add", "br0", "type", "bridge", netns=self.lan)
        _ip("link", "set", "br0", "up", netns=self.lan)
        # The server: the root namespace's end keeps the address, the other end is a switch port.
        root, root_port = f"mg{n}srv", f"mg{n}srvp"
        _ip("link", "add", root, "type", "veth", "peer", "name", root_port)
        self._plug(root_port)
        _ip("addr", "add", f"{self.server_address}/24", "dev", root)
        _ip("link", "set", root, "up")
        for index, name in enumerate(self.names):
            host = Host(self, name, f"{PREFIX}.{n}.{11 + index}", f"mg{n}{name}p")
            _ip("netns", "add", host.netns)
            end = f"mg{n}{name}h"
            _ip("link", "add", end, "type", "veth", "peer", "name", host._port)
            self._plug(host._port)
            _ip("link", "set", end, "netns", host.netns)
            _ip("link", "set", end, "name", "eth0", netns=host.netns)
            _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.netns)
            _ip("link", "set", "eth0", "up", netns=host.netns)
            _ip("link", "set", "lo", "up", netns=host.netns)
            self.hosts[name] = host
        for host in self.hosts.values():  # the bridge learns and forwards within a moment
            _wait_for(lambda h=host: _reaches(h, self.server_address), 10, f"{host.name} to reach the server")

    def _plug(self, port: str) -> None:
        _ip("link", "set", port, "netns", self.lan)
        _ip("link", "set", port, "master", "br0", netns=self.lan)
        _ip("link", "set", port, "up", netns=self.lan)

    @staticmethod
    def _remove(number: int) -> None:
        listed = _ip("netns", "list", check=False).stdout.split("\n")
        for line in listed:
            name = line.split(" ")[0]
            if name.startswith(f"mg{number}-"):
                _ip("netns", "del", name, check=False)  # its veth ends, and so their peers, go with it
        _ip("link", "del", f"mg{number}srv", check=False)


def _reaches(host: Host, address: str) -> bool:
    """A TCP connect from ``host`` to ``address`` port 9 is answered at once (refused: nobody listens there)."""
    probe = (
        "import socket, sys; s = socket.socket(); s.settimeout(0.5); "
        f"sys.exit(s.connect_ex(({address!r}, 9)) not in (0, 111))"
    )
    return host.run(["python3", "-c", probe], timeout=10).returncode == 0


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --------------------------------------------------------------------------- latency


class DelayRelay:
    """A TCP relay that holds every chunk for ``delay`` seconds in each direction, order kept.

    Listens on ``listen`` (the server's LAN address, a port of its own) and
    forwards to ``target``; a host whose settings name the relay instead of the
    service sees every round trip ``2 * delay`` longer. Runs an asyncio loop in
    a thread of the test process; :meth:`close` ends it and every connection.
    """

    def __init__(self, listen_host: str, target: tuple[str, int], delay: float) -> None:
        self.listen = (listen_host, free_port())
        self.target = target
        self.delay = delay
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="delay-relay", daemon=True)

    @property
    def port(self) -> int:
        return self.listen[1]

    def start(self) -> DelayRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay relay did not start")
        return self

    def __enter__(self) -> DelayRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, *self.listen))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        asyncio.get_running_loop().stop()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        except (OSError, asyncio.CancelledError):  # the relay is closing, or a side reset
            client_w.close()
            server_w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def release() -> None:
            while True:
                due, chunk = await held.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    writer.close()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(release())
        try:
            while chunk := await reader.read(65536):
                held.put_nowait((loop.time() + self.delay, chunk))
        except OSError:
            pass
        held.put_nowait((loop.time() + self.delay, b""))
        with contextlib.suppress(OSError):
            await sender


# --------------------------------------------------------------------------- services


class RedisServer:
    """A private ``redis-server`` on the given addresses (persistence off: each test starts empty)."""

    def __init__(self, folder: Path, bind: Sequence[str], port: int | None = None, *extra: str) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = port or free_port()
        self.bind = list(bind)
        folder.mkdir(parents=True, exist_ok=True)
        self.command = [
            "redis-server", "--port", str(self.port), "--bind", *self.bind, "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--protected-mode", "no", *extra,
        ]  # fmt: skip
        self.log = folder / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, address: str | None = None, db: int = 0) -> str:
        return f"redis://{address or self.bind[0]}:{self.port}/{db}"

    def start(self) -> RedisServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        _wait_for(lambda: _tcp_open(self.bind[0], self.port), 10, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _tcp_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class PostgresCluster:
    """A private PostgreSQL cluster (``initdb`` into a temporary folder), trust auth, on the given addresses.

    The machine's PostgreSQL listens on loopback only, which a test host (its
    own namespace, its own loopback) cannot reach; this one listens where the
    hosts are. Durability is off (``fsync``): the tests cut networks, not power.
    """

    def __init__(self, listen: Sequence[str], allow: str) -> None:
        self.listen = list(listen)
        self.allow = allow  # a CIDR that may connect (the LAN)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="meingym-pg-"))  # not under pytest's 0700 tmp: postgres reads it
        self.data = self.folder / "data"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60)

    def __enter__(self) -> PostgresCluster:
        binaries = _postgres_binaries()
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no postgres user to run a private PostgreSQL cluster as")
        if binaries is None:
            pytest.skip("initdb/pg_ctl are not installed")
        self._bin = binaries
        os.chown(self.folder, pwd.getpwnam("postgres").pw_uid, -1)
        try:
            self._as_postgres(str(binaries / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                              "--no-sync", "-E", "UTF8")  # fmt: skip
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.allow} trust\n")
            options = (
                f"-c listen_addresses='{','.join(self.listen)}' -p {self.port} -k {self.folder} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
            )
            self._as_postgres(str(binaries / "pg_ctl"), "-D", str(self.data), "-o", options,
                              "-l", str(self.folder / "postgres.log"), "-w", "-t", "30", "start")  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def url(self, database: str, address: str | None = None, port: int | None = None) -> str:
        return f"postgresql://postgres@{address or self.listen[0]}:{port or self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __exit__(self, *exc: object) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(self._bin / "pg_ctl"), "-D", str(self.data),
                 "-m", "immediate", "-w", "-t", "30", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def stopped_on_exit(*hosts: Host) -> Iterator[None]:
    """Stop what the hosts run (gracefully, then by force) when the block ends."""
    try:
        yield
    finally:
        for host in hosts:
            host.stop()
