"""A real Ray cluster on this machine, started as a person starts one: `ray start --head` and
`ray start --address` for each further node, each its own process (session) with its own CPU
count, token authentication on with a token of its own. For the cluster tests and for
`densehead batch-benchmark --ray-nodes`.

Only what was started here is stopped: every process of a node (its `ray start --block`, its
process group and every descendant, snapshotted before the kill), never `ray stop`, which stops
every Ray on the machine. The token lives in the cluster's temporary folder
(RAY_AUTH_TOKEN_PATH), so nothing is written to the user's ~/.ray.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .browser import free_port

STARTED = "Ray runtime started."   # what `ray start --block` prints once its node is up
START_TIMEOUT_S = 180.0
TOKEN_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class RayNode:
    name: str
    cpus: int
    log: Path
    proc: subprocess.Popen | None = None


@dataclass
class LoopbackCluster:
    """`with LoopbackCluster([1, 1]) as cluster:` a head with 1 CPU and a second node with 1;
    `cluster.address` and `cluster.env` (the token settings a driver needs) to join it."""
    cpus: list[int]
    port: int = field(default_factory=free_port)
    nodes: list[RayNode] = field(default_factory=list)
    folder: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_file(self) -> Path:
        assert self.folder is not None
        return self.folder / "token"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with the cluster's token settings (and no other)."""
        env = {k: v for k, v in os.environ.items() if k not in TOKEN_ENV and k != "RAY_ADDRESS"}
        return env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                      "RAY_USAGE_STATS_ENABLED": "0"}

    def __enter__(self) -> "LoopbackCluster":
        # short: Ray's socket paths under it must stay within 107 bytes
        self.folder = Path(tempfile.mkdtemp(prefix="dh-ray-", dir="/tmp"))
        self.token_file.write_text(secrets.token_hex(32))
        try:
            for i, cpus in enumerate(self.cpus):
                self._start(RayNode("head" if i == 0 else f"node{i}", cpus,
                                    self.folder / f"node{i}.log"))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for node in reversed(self.nodes):
            self.kill(node)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self, node: RayNode) -> None:
        where = (["--head", "--port", str(self.port), "--include-dashboard", "false",
                  "--disable-usage-stats"] if not self.nodes else ["--address", self.address])
        command = [_ray(), "start", *where, "--num-cpus", str(node.cpus),
                   "--temp-dir", str(self.folder / "ray"), "--block"]
        with open(node.log, "w") as log:
            node.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.folder, start_new_session=True)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while STARTED not in node.log.read_text(errors="replace"):
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({node.name}) did not come up: "
                                   f"{node.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def node_pids(self, node: RayNode) -> set[int]:
        """The node's `ray start`, its process group and all their descendants, now."""
        if node.proc is None:
            return set()
        parents = _parents()
        group = {p for p in parents if _pgid(p) == node.proc.pid}
        found = {node.proc.pid} | group
        grew = True
        while grew:
            more = {p for p, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        return found

    def kill(self, node: RayNode) -> None:
        """SIGKILL every process of the node, as a machine that loses power."""
        for pid in self.node_pids(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if node.proc is not None:
            node.proc.wait()


def _ray() -> str:
    beside = Path(sys.executable).with_name("ray")   # the ray of this interpreter's install
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise OSError('the ray command is missing: pip install "densehead[ray]"')
    return found


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
