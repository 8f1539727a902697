"""Separate "hosts" on one machine: Linux network namespaces joined by a bridge, and the faults
between them (drop rules, injected latency). Used by tests/integration/test_multihost.py.

Every host is a named network namespace (``ip netns``) with one veth interface on a bridge that
lives in a "switch" namespace of its own, and one address in a /24 of 10.77.x.0. The test process
reaches the hosts through one more veth from its own namespace (``.1``): the servers and workers
talk to each other over the bridge, never over a loopback. Names carry the pid, so parallel test
sessions never share a namespace, and :meth:`Network.close` removes everything it made (also after
a failure half-way through setting up).

Latency: ``tc netem`` where the kernel has it; where it refuses (a Firecracker VM kernel without
``sch_netem``), a delaying TCP relay in the server's namespace, reached through an iptables
``REDIRECT`` of the client's connections so that the client still dials the server's real address.
Run as ``python tests/netns_hosts.py relay ...`` (see :func:`_relay_main`).
"""

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_SWITCH_IF = "br0"
_RELAY_PORT = 15432  # the relay's port in the server's namespace (nothing else listens there)


class NetnsUnavailableError(RuntimeError):
    """This machine cannot make the hosts: not root, no ``ip netns``, no iptables."""


class NetemUnavailableError(RuntimeError):
    """The kernel refuses the ``netem`` queueing discipline."""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why the multi-host tests cannot run here, or ``None`` when they can (checked by doing it)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / iptables)"
    probe = f"ilprobe{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"the kernel refuses network namespaces: ip netns add: {made.stderr.strip()}"
    try:
        rule = _run(
            "ip",
            "netns",
            "exec",
            probe,
            "iptables",
            "-A",
            "INPUT",
            "-s",
            "10.0.0.1",
            "-j",
            "DROP",
            check=False,
        )
        if rule.returncode != 0:
            return f"iptables cannot add a drop rule in a namespace: {rule.stderr.strip()}"
        nat = _run("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n", check=False)
        if nat.returncode != 0:
            return (
                f"iptables has no nat table in a namespace (the latency relay needs it): {nat.stderr.strip()}"
            )
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One simulated machine: its namespace and its address on the bridge."""

    role: str
    netns: str
    address: str

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host's network namespace."""
        return _run("ip", "netns", "exec", self.netns, *cmd, check=check)


@dataclass
class Network:
    """A bridge with hosts on it; a context manager that tears everything down."""

    tag: str = field(default_factory=lambda: f"il{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)
    subnet: ipaddress.IPv4Network = field(init=False)
    _namespaces: list[str] = field(default_factory=list)
    _relays: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subnet = _free_subnet()
        self.switch = f"{self.tag}sw"
        self._uplink = f"{self.tag}r"  # the test process's end, in its own namespace

    def __enter__(self) -> "Network":
        try:
            self._add_namespace(self.switch)
            _run("ip", "-n", self.switch, "link", "add", _SWITCH_IF, "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", _SWITCH_IF, "up")
            peer = f"{self.tag}u"
            _run(
                "ip", "link", "add", self._uplink, "type", "veth", "peer", "name", peer, "netns", self.switch
            )
            self._plug(peer)
            _run("ip", "addr", "add", f"{self._address(1)}/{self.subnet.prefixlen}", "dev", self._uplink)
            _run("ip", "link", "set", self._uplink, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def runner_address(self) -> str:
        """The test process's own address on the bridge."""
        return self._address(1)

    def add_host(self, role: str, octet: int) -> Host:
        """A new namespace with ``eth0`` on the bridge at ``<subnet>.<octet>``, and ``lo`` up."""
        host = Host(role, f"{self.tag}{role}", self._address(octet))
        self._add_namespace(host.netns)
        port = f"{self.tag}p{octet}"
        _run("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _run("ip", "link", "set", port, "netns", self.switch)
        self._plug(port)
        _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        self.hosts[role] = host
        return host

    def close(self) -> None:
        """Stop the relays, delete the namespaces (their interfaces go with them) and the uplink."""
        for relay in self._relays:
            relay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                relay.wait(5)
            if relay.poll() is None:
                relay.kill()
                relay.wait(5)
        self._relays.clear()
        for ns in reversed(self._namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        _run("ip", "link", "del", self._uplink, check=False)

    # ------------------------------------------------------------------ faults
    @contextlib.contextmanager
    def partition(self, a: Host, b: Host) -> Iterator[None]:
        """No packet between ``a`` and ``b`` either way (iptables DROP on both hosts' INPUT) while
        inside; established connections stay open on both ends, as across a failed switch."""
        rules = [(a, b.address), (b, a.address)]
        for host, source in rules:
            host.exec("iptables", "-I", "INPUT", "-s", source, "-j", "DROP")
        try:
            yield
        finally:
            for host, source in rules:
                host.exec("iptables", "-D", "INPUT", "-s", source, "-j", "DROP", check=False)

    @contextlib.contextmanager
    def netem_delay(self, host: Host, delay_ms: int) -> Iterator[None]:
        """``tc netem`` delay on everything ``host`` sends; :class:`NetemUnavailableError` if refused."""
        added = host.exec(
            "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{delay_ms}ms", check=False
        )
        if added.returncode != 0:
            raise NetemUnavailableError(f"tc netem refused by this kernel: {added.stderr.strip()}")
        try:
            yield
        finally:
            host.exec("tc", "qdisc", "del", "dev", "eth0", "root", check=False)

    @contextlib.contextmanager
    def relay_delay(
        self, client: Host, server: Host, port: int, delay_ms: int, log_path: Path
    ) -> Iterator[Path]:
        """Every new TCP connection from ``client`` to ``server:port`` goes through a relay in the
        server's namespace that holds each chunk ``delay_ms`` in each direction (so a round trip
        costs twice that). The relay logs one ``accepted <peer>`` line per connection: the proof that
        the client's traffic was delayed. Connections opened before it started are not affected."""
        log = log_path.open("ab")
        relay = subprocess.Popen(
            [
                "ip", "netns", "exec", server.netns, sys.executable, str(Path(__file__).resolve()), "relay",
                "--listen", f"{server.address}:{_RELAY_PORT}", "--target", f"{server.address}:{port}",
                "--delay-ms", str(delay_ms),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._relays.append(relay)
        redirect = (
            "PREROUTING", "-s", client.address, "-d", server.address, "-p", "tcp", "--dport", str(port),
            "-j", "REDIRECT", "--to-ports", str(_RELAY_PORT),
        )  # fmt: skip
        try:
            _wait_listening(server, _RELAY_PORT, relay)
            server.exec("iptables", "-t", "nat", "-I", *redirect)
            yield log_path
        finally:
            server.exec("iptables", "-t", "nat", "-D", *redirect, check=False)
            relay.terminate()
            relay.wait(10)
            self._relays.remove(relay)
            log.close()

    # ------------------------------------------------------------------ internals
    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "del", name, check=False)  # a leftover of a crashed session with this pid
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)

    def _plug(self, port: str) -> None:
        _run("ip", "-n", self.switch, "link", "set", port, "master", _SWITCH_IF)
        _run("ip", "-n", self.switch, "link", "set", port, "up")

    def _address(self, octet: int) -> str:
        return str(self.subnet.network_address + octet)


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.77.x.0/24 that no route of this namespace covers (another session may hold one)."""
    routes = _run("ip", "-4", "route", "show").stdout
    used = [
        ipaddress.ip_network(line.split()[0], strict=False)
        for line in routes.splitlines()
        if line[:1].isdigit()
    ]
    start = os.getpid() % 250
    for i in range(250):
        candidate = ipaddress.IPv4Network(f"10.77.{(start + i) % 250}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NetnsUnavailableError("every 10.77.x.0/24 is already routed here")


def _wait_listening(host: Host, port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the relay exited ({proc.returncode}) before listening")
        if f":{port} " in host.exec("ss", "-Htln", check=False).stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the relay did not listen on {host.address}:{port} within {timeout_s:g}s")


# ---------------------------------------------------------------------- the delaying relay
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Forward every chunk ``delay_s`` after it arrived, in order (a queue, not a sleep per chunk:
    throughput is kept, only latency added)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay_s, chunk))
        queue.put_nowait((0.0, b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        reading.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(listen: str, target: str, delay_ms: int) -> None:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    delay_s = delay_ms / 1000

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        print(f"accepted {c_writer.get_extra_info('peername')[0]}", flush=True)
        try:
            s_reader, s_writer = await asyncio.open_connection(thost, int(tport))
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(_pipe(c_reader, s_writer, delay_s), _pipe(s_reader, c_writer, delay_s))

    server = await asyncio.start_server(handle, lhost, int(lport))
    print(f"relaying {listen} -> {target} with {delay_ms} ms each way", flush=True)
    async with server:
        await server.serve_forever()


def _relay_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="netns_hosts.py relay")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--delay-ms", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_relay(args.listen, args.target, args.delay_ms))


if __name__ == "__main__":
    if sys.argv[1:2] != ["relay"]:
        sys.exit("usage: netns_hosts.py relay --listen HOST:PORT --target HOST:PORT --delay-ms N")
    _relay_main(sys.argv[2:])
