"""`densehead serve --replicas N`: N dashboard servers on this machine behind one address.

Each replica is `densehead serve` on its own loopback port (the proxy's port + 1, + 2, ...) with
its own status file and log; nginx (dashboard/proxy.py) listens on the proxy's port and keeps
every browser on one replica. Everything goes in one run folder, described by `replicas.json`
there (ports, pids, status files, logs) for an operator or a test. Ctrl-C or SIGTERM stops all;
a replica that exits is reported and its viewers move to the others; if the launcher itself is
killed, the kernel stops its children (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..core.processes import sigterm_as_interrupt, stop_process
from .proxy import (
    CONFIG_NAME,
    ERROR_LOG_NAME,
    LOG_NAME,
    REPLICA_ENV,
    Backend,
    ProxySettings,
    check_config,
    nginx_command,
    write_config,
)
from .serve import answers_health
from .status import STATUS_ENV

RUN_FILE = "replicas.json"
HOST = "127.0.0.1"            # replicas listen here only: browsers reach them through the proxy
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
OWN_OPTIONS = ("--server.port", "--server.address")   # chosen here for each replica
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """A process this launcher started and stops."""
    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env},
                                         start_new_session=True,   # Ctrl-C is the launcher's
                                         preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, STOP_TIMEOUT_S)


@dataclass
class Replica:
    backend: Backend
    status_file: Path
    child: Child


@dataclass
class ReplicaSet:
    run_dir: Path
    proxy: ProxySettings
    replicas: list[Replica]
    nginx: Child

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.proxy.address in ("0.0.0.0", "::") else self.proxy.address
        return f"{self.proxy.scheme}://{host}:{self.proxy.port}"

    def describe(self) -> dict:
        return {"url": self.url, "run_dir": str(self.run_dir),
                "proxy": {"pid": self.nginx.proc.pid, "config": str(self.run_dir / CONFIG_NAME),
                          "log": str(self.nginx.log)},
                "replicas": [{"name": r.backend.name, "url": f"http://{r.backend.address}",
                              "pid": r.child.proc.pid, "status": str(r.status_file),
                              "log": str(r.child.log)} for r in self.replicas]}

    def children(self) -> list[Child]:
        return [self.nginx] + [r.child for r in self.replicas]


def plan_replicas(count: int, proxy: ProxySettings, streamlit_args: list[str],
                  run_dir: Path | None = None) -> ReplicaSet:
    if count < 1:
        raise ValueError(f"--replicas must be at least 1, got {count}")
    taken = [a for a in streamlit_args if a.split("=")[0] in OWN_OPTIONS]
    if taken:
        raise ValueError(f"with --replicas the replicas' ports and address are chosen by "
                         f"densehead (the proxy's port + 1, + 2, ... on {HOST}); leave out "
                         f"{', '.join(taken)} and use --proxy-port")
    for host, port in [(proxy.address, proxy.port)] + [(HOST, proxy.port + i)
                                                       for i in range(1, count + 1)]:
        _check_free(host, port)
    run = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="densehead-serve-"))
    run.mkdir(parents=True, exist_ok=True)
    replicas = []
    for i in range(1, count + 1):
        backend = Backend(f"r{i}", HOST, proxy.port + i)
        status = _status_file(run, backend.name)
        command = [sys.executable, "-m", "densehead", "serve", "--server.port",
                   str(backend.port), "--server.address", HOST, "--server.headless", "true",
                   *streamlit_args]
        child = Child(backend.name, command, run / f"{backend.name}.log",
                      env={STATUS_ENV: str(status), REPLICA_ENV: backend.name})
        replicas.append(Replica(backend, status, child))
    config = write_config([r.backend for r in replicas], proxy, run)
    nginx = Child("nginx", nginx_command(config), run / LOG_NAME)
    return ReplicaSet(run, proxy, replicas, nginx)


def serve_replicas(replica_set: ReplicaSet) -> int:
    """Start everything, report, and wait until Ctrl-C, SIGTERM or the proxy's end."""
    try:
        with sigterm_as_interrupt():   # the children are in their own sessions: SIGTERM is ours
            return _start_and_watch(replica_set)
    except KeyboardInterrupt:   # what the operator asked for
        return 0
    finally:
        for child in replica_set.children():   # the proxy first: no new requests to replicas
            child.stop()
        print("densehead serve: stopped the proxy and the replicas", file=sys.stderr)


def _start_and_watch(replica_set: ReplicaSet) -> int:
    check_config(replica_set.run_dir / CONFIG_NAME)
    for replica in replica_set.replicas:
        replica.child.start()
    for replica in replica_set.replicas:
        _wait_healthy(replica)
    replica_set.nginx.start()
    _wait_proxy(replica_set)
    (replica_set.run_dir / RUN_FILE).write_text(json.dumps(replica_set.describe(), indent=1))
    _announce(replica_set)
    return _watch(replica_set)


def _watch(replica_set: ReplicaSet) -> int:
    reported: set[str] = set()
    while True:
        if not replica_set.nginx.running():
            print(f"densehead serve: nginx exited (code {replica_set.nginx.proc.returncode}); "
                  f"see {replica_set.run_dir / ERROR_LOG_NAME}", file=sys.stderr)
            return 1
        for r in replica_set.replicas:
            if not r.child.running() and r.backend.name not in reported:
                reported.add(r.backend.name)
                print(f"densehead serve: replica {r.backend.name} (port {r.backend.port}) "
                      f"exited with code {r.child.proc.returncode}; its viewers move to the "
                      f"others when their page reconnects ({r.child.log})", file=sys.stderr)
        if len(reported) == len(replica_set.replicas):
            print("densehead serve: no replica left", file=sys.stderr)
            return 1
        time.sleep(0.5)


def _announce(replica_set: ReplicaSet) -> None:
    ports = ", ".join(str(r.backend.port) for r in replica_set.replicas)
    many = "s" if len(replica_set.replicas) > 1 else ""
    print(f"densehead serve: {len(replica_set.replicas)} replica{many} (port{many} {ports}) behind "
          f"{replica_set.url} (nginx, sticky per browser); status files, logs and "
          f"{RUN_FILE} in {replica_set.run_dir}; Ctrl-C stops all", file=sys.stderr)
    sys.stderr.flush()


def _check_free(host: str, port: int) -> None:
    with socket.socket() as s:
        # as nginx and Streamlit bind: a port whose last connections are only closing is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as error:
            raise OSError(f"port {port} on {host} is taken ({error.strerror}): the proxy uses "
                          f"--proxy-port and the replicas the ports after it; choose another "
                          f"--proxy-port") from None


def _status_file(run: Path, name: str) -> Path:
    """Beside DENSEHEAD_LIVE_STATUS when the operator set one (status.json -> status.r1.json),
    else in the run folder."""
    given = os.environ.get(STATUS_ENV)
    if given:
        base = Path(given)
        return base.with_name(f"{base.stem}.{name}{base.suffix or '.json'}")
    return run / f"{name}.status.json"


def _wait_healthy(replica: Replica) -> None:
    url = f"http://{replica.backend.address}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not replica.child.running():
            raise OSError(f"replica {replica.backend.name} exited while starting (code "
                          f"{replica.child.proc.returncode}); see {replica.child.log}")
        if answers_health(url):
            return
        time.sleep(0.3)
    raise OSError(f"replica {replica.backend.name} did not answer at {url} within "
                  f"{START_TIMEOUT_S:.0f} s; see {replica.child.log}")


def _wait_proxy(replica_set: ReplicaSet) -> None:
    url = replica_set.url
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not replica_set.nginx.running():
            raise OSError(f"nginx exited at start: "
                          f"{(replica_set.run_dir / ERROR_LOG_NAME).read_text().strip()}")
        # over TLS (a certificate for a name, not for this loopback address): listening will do
        if _accepts(url) if replica_set.proxy.cert else answers_health(url):
            return
        time.sleep(0.2)
    raise OSError(f"the proxy did not answer at {url}")


def _accepts(url: str) -> bool:
    """Whether something listens at the host and port of `url`."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies, however it dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):   # not Linux: Ctrl-C and SIGTERM still stop all
        pass
