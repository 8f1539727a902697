"""The image's HEALTHCHECK: one script for every process the ``intentloop`` image runs.

A container runs one subcommand, and what "healthy" means depends on it, so the check first finds
the ``intentloop`` process in the container (PID 1, or the child of an init such as Compose's
``init: true``) and reads its arguments:

* ``worker serve``: ``GET /healthz`` on its port (``--port``, else ``INTENTLOOP_SERVE__PORT``). Alive,
  not ready: a fresh deployment has no promoted adapter yet, and ``/readyz`` (503 until one is
  loaded) is what the reverse proxy and Kubernetes' readiness probe gate traffic on.
* ``dashboard``: ``GET /healthz`` on its port (``--port``, else ``INTENTLOOP_DRIFT__DASHBOARD_PORT``).
* ``worker ingest`` / ``worker predict``: the process holds an established TCP connection to a
  broker port of ``INTENTLOOP_KAFKA__BOOTSTRAP`` (read from ``/proc/net/tcp*``). A consumer in its
  group heartbeats to the group coordinator every ``session_timeout/5`` seconds, so a worker that
  lost the broker has no such connection. Ingestion that stalls on Postgres keeps it; that is
  measured by consumer-group lag (the dashboard's ``/metrics``), not by a container probe.
* anything else (``train schedule``, ``drift check --every``, one-shot jobs): healthy while it runs;
  a crash ends the container and the restart policy acts.

Standard library only, so it runs in any image variant. Exit 0 healthy, 1 unhealthy (Docker's
contract), with one line saying why.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT_S = 3.0
_TCP_ESTABLISHED = "01"  # the st column of /proc/net/tcp
_DEFAULT_SERVE_PORT = 8080  # serving.settings.ServeSettings.port
_DEFAULT_DASH_PORT = 8090  # streams.drift.settings.DriftSettings.dashboard_port


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def find_command(proc: Path = Path("/proc"), self_pid: int | None = None) -> list[str] | None:
    """The arguments after ``intentloop`` of the lowest-numbered intentloop process, or None."""
    own = os.getpid() if self_pid is None else self_pid
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit() and int(p.name) != own)
    for pid in pids:
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        args = intentloop_args(raw.split(b"\0"))
        if args is not None:
            return args
    return None


def intentloop_args(argv: Sequence[bytes]) -> list[str] | None:
    """``[.../python, .../bin/intentloop, worker, serve]`` -> ``[worker, serve]``; None if not ours."""
    words = [a.decode(errors="replace") for a in argv if a]
    for i, word in enumerate(words[:2]):
        if Path(word).name == "intentloop":
            return words[i + 1 :]
    return None


def option(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``args``."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def check(args: Sequence[str] | None, env: dict[str, str], proc: Path = Path("/proc")) -> Verdict:
    """What the running subcommand's health is (see the module docstring)."""
    if args is None:
        return Verdict(False, "no intentloop process in this container")
    words = [a for a in args if not a.startswith("-")]
    if words[:2] == ["worker", "serve"]:
        port = option(args, "--port") or env.get("INTENTLOOP_SERVE__PORT") or _DEFAULT_SERVE_PORT
        return http_ok(f"http://127.0.0.1:{port}/healthz")
    if words[:1] == ["dashboard"]:
        port = option(args, "--port") or env.get("INTENTLOOP_DRIFT__DASHBOARD_PORT") or _DEFAULT_DASH_PORT
        return http_ok(f"http://127.0.0.1:{port}/healthz")
    if words[:2] in (["worker", "ingest"], ["worker", "predict"]):
        return broker_connected(env.get("INTENTLOOP_KAFKA__BOOTSTRAP"), proc)
    return Verdict(True, f"`intentloop {' '.join(words[:2])}` is running")


def http_ok(url: str) -> Verdict:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return Verdict(response.status == 200, f"{url}: HTTP {response.status}")
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSError
        return Verdict(False, f"{url}: {exc}")


def broker_ports(bootstrap: str) -> set[int]:
    """``kafka-1:9092,[::1]:9094`` -> ``{9092, 9094}``."""
    return {int(entry.rsplit(":", 1)[1]) for entry in bootstrap.split(",") if ":" in entry}


def established_remote_ports(tables: Iterable[str]) -> set[int]:
    """Remote ports of the ESTABLISHED connections in ``/proc/net/tcp``-format tables."""
    ports: set[int] = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_ESTABLISHED:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def broker_connected(bootstrap: str | None, proc: Path) -> Verdict:
    if not bootstrap:
        return Verdict(False, "INTENTLOOP_KAFKA__BOOTSTRAP is unset (the image has no embedded broker)")
    wanted = broker_ports(bootstrap)
    tables = [p.read_text() for p in (proc / "net" / "tcp", proc / "net" / "tcp6") if p.is_file()]
    connected = wanted & established_remote_ports(tables)
    if connected:
        return Verdict(True, f"connected to the broker (port {sorted(connected)[0]})")
    return Verdict(False, f"no established connection to a broker port {sorted(wanted)} of {bootstrap}")


def main() -> int:
    socket.setdefaulttimeout(_TIMEOUT_S)
    verdict = check(find_command(), dict(os.environ))
    print(("healthy: " if verdict.healthy else "unhealthy: ") + verdict.reason)
    return 0 if verdict.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
