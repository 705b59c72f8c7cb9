"""The reverse proxy in front of several dashboard servers: nginx, configured from the template
shipped beside this module (nginx.conf.template; why it routes as it does is written there).

nginx runs in the foreground as the current user with a private prefix (its pid file, logs and
temporary files under one folder), so it needs no root and touches no system configuration.
"""
from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

TEMPLATE = "nginx.conf.template"
SEARCHED = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")   # not on a normal user's PATH
REPLICA_COOKIE = "densehead_replica"   # the replica a browser is kept on
REPLICA_ENV = "DENSEHEAD_REPLICA"      # a replica's own name, in its environment
MOVED_COOKIE = "densehead_moved"       # the replica it lost, set when its server went away
MOVED_NOTICE_S = 60                    # how long after the move a page still says so
# How long the proxy keeps an idle connection to a replica for the next request: well below the
# replica's own limit (Streamlit's server, uvicorn, closes a connection idle for 5 s). Past it,
# a request sent on a connection the replica was closing failed, which counted the replica as
# down and moved the browser's cookie to another one while its session stayed behind.
UPSTREAM_IDLE_S = 2
_KEEPALIVE = ("keepalive 16;", f"keepalive_timeout {UPSTREAM_IDLE_S}s;")   # in every group


@dataclass(frozen=True)
class Backend:
    """One dashboard server behind the proxy; `name` is what the browser's cookie holds."""
    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# the run folder's files (nginx's prefix): its configuration, its output, its early error log
CONFIG_NAME, LOG_NAME, ERROR_LOG_NAME = "nginx.conf", "nginx.log", "error.log"
DEFAULT_ADDRESS = "0.0.0.0"   # every interface: the proxy is what people connect to


@dataclass(frozen=True)
class ProxySettings:
    port: int
    address: str = DEFAULT_ADDRESS
    cert: Path | None = None     # TLS at the proxy: the certificate chain and its key
    key: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in SEARCHED if os.access(p, os.X_OK)), None)
    if found is None:
        raise OSError("nginx not found: the replicas' proxy is Debian's nginx "
                      "(apt-get install nginx)")
    return found


def render_config(backends: list[Backend], proxy: ProxySettings, prefix: Path) -> str:
    """The nginx configuration: one group per backend (itself, the others as backups) and a
    round-robin group for browsers that have no cookie yet."""
    if not backends:
        raise ValueError("the proxy needs at least one server behind it")
    if (proxy.cert is None) != (proxy.key is None):
        raise ValueError("TLS at the proxy needs both a certificate and its key")
    values = {
        "user": _user_line(),
        "prefix": str(prefix),
        "replica_cookie": REPLICA_COOKIE,
        "moved_cookie": MOVED_COOKIE,
        "moved_seconds": str(MOVED_NOTICE_S),
        "groups_by_cookie": _lines(f'"{b.name}" densehead_{b.name};' for b in backends),
        "names_by_address": _lines(f'"{b.address}" {b.name};' for b in backends),
        "all_servers": _lines([*(_server(b) for b in backends), *_KEEPALIVE]),
        "replica_groups": "\n".join(_group(b, backends) for b in backends),
        "listen": f"{proxy.address}:{proxy.port}" + (" ssl" if proxy.cert else ""),
        "tls": (f"        ssl_certificate {proxy.cert};\n        ssl_certificate_key {proxy.key};"
                if proxy.cert else ""),
    }
    return fill(resources.files(__package__).joinpath(TEMPLATE).read_text(), values)


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every {{name}}; a name left over is a mistake in the template."""
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", value)
    if "{{" in template:
        left = template[template.index("{{"):].split("}}", 1)[0] + "}}"
        raise ValueError(f"{TEMPLATE}: no value for {left}")
    return template


def write_config(backends: list[Backend], proxy: ProxySettings, prefix: Path) -> Path:
    for folder in ("temp",):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    path = prefix / CONFIG_NAME
    path.write_text(render_config(backends, proxy, prefix))
    return path


def nginx_command(config: Path) -> list[str]:
    """nginx in the foreground with `config`, its prefix and early error log beside it."""
    prefix = config.parent
    return [nginx_binary(), "-p", str(prefix), "-c", str(config),
            "-e", str(prefix / ERROR_LOG_NAME), "-g", "daemon off;"]


def check_config(config: Path) -> None:
    """`nginx -t`: a configuration nginx refuses, said in nginx's own words."""
    result = subprocess.run(nginx_command(config)[:-2] + ["-t", "-q"], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise OSError(f"nginx refused {config}: {result.stderr.strip()}")


def _user_line() -> str:
    """nginx started by root runs its workers as `nobody` unless told otherwise; started by
    anyone else it stays that user (and would warn about a `user` line)."""
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid())
    return f"user {user.pw_name} {grp.getgrgid(user.pw_gid).gr_name};"


def _server(backend: Backend, backup: bool = False) -> str:
    return (f"server {backend.address}" + (" backup" if backup else
                                            " max_fails=1 fail_timeout=5s") + ";")


def _group(backend: Backend, backends: list[Backend]) -> str:
    others = [_server(b, backup=True) for b in backends if b != backend]
    body = _lines([_server(backend), *others, *_KEEPALIVE])
    return f"    upstream densehead_{backend.name} {{\n{body}\n    }}"


def _lines(lines) -> str:
    return "\n".join(f"        {line}" for line in lines)


@contextlib.contextmanager
def nginx_in_front(backends: list[Backend], proxy: ProxySettings, prefix: Path) -> Iterator[str]:
    """nginx in front of `backends` for the length of the block (a benchmark's rounds through
    the proxy); yields its URL and stops it by its own pid."""
    config = write_config(backends, proxy, prefix)
    check_config(config)
    with open(prefix / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(nginx_command(config), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"{proxy.scheme}://127.0.0.1:{proxy.port}"
    finally:
        proc.terminate()
        proc.wait()
