"""`densehead serve --replicas N` without a browser: the proxy's configuration as nginx reads it,
the options it refuses, and a launcher that is killed leaves nothing running (tests/e2e/
test_replicas.py has people streaming through it)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import alive
from paths import ROOT

from densehead.cli import main
from densehead.dashboard.proxy import (
    Backend,
    ProxySettings,
    check_config,
    nginx_binary,
    render_config,
    write_config,
)

BACKENDS = [Backend(f"r{i}", "127.0.0.1", 8501 + i) for i in (1, 2, 3)]


@pytest.fixture
def nginx() -> str:
    try:
        return nginx_binary()
    except OSError as error:
        pytest.skip(str(error))


def test_replicas_proxy_config_is_what_nginx_accepts(nginx, tmp_path):
    config = write_config(BACKENDS, ProxySettings(8501, "127.0.0.1"), tmp_path)
    check_config(config)   # nginx -t with the private prefix: no root, no system file
    text = config.read_text()
    assert "{{" not in text and str(tmp_path / "nginx.pid") in text
    # each replica's group is that replica first and the others as backups
    group = text.split("upstream densehead_r2 {")[1].split("}")[0]
    assert group.split(";")[0].strip() == "server 127.0.0.1:8503 max_fails=1 fail_timeout=5s"
    assert "server 127.0.0.1:8502 backup" in group and "server 127.0.0.1:8504 backup" in group


def test_replicas_tls_at_the_proxy(nginx, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    with pytest.raises(ValueError, match="both a certificate and its key"):
        render_config(BACKENDS, ProxySettings(8443, cert=cert), tmp_path)
    text = render_config(BACKENDS, ProxySettings(8443, cert=cert, key=key), tmp_path)
    assert "listen 0.0.0.0:8443 ssl;" in text and f"ssl_certificate_key {key};" in text


def test_replicas_choose_their_own_ports(capsys):
    assert main(["serve", "--replicas", "2", "--server.port", "9000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("densehead: error: with --replicas") and "--server.port" in err
    assert main(["serve", "--proxy-port", "9000"]) == 1
    assert "go with --replicas" in capsys.readouterr().err


def test_replicas_say_when_their_port_is_taken(capsys):
    from densehead.tools.browser import free_ports

    port = free_ports(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))   # where the second replica would listen
        assert main(["serve", "--replicas", "2", "--proxy-port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port + 2} on 127.0.0.1 is taken" in err and "--proxy-port" in err


@pytest.mark.slow
def test_replicas_launcher_killed_takes_its_servers_and_proxy_with_it(nginx, tmp_path,
                                                                       assets_dir):
    from densehead.tools.browser import free_ports

    port = free_ports(2)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "densehead", "serve", "--replicas", "1", "--proxy-port",
         str(port), "--proxy-address", "127.0.0.1", "--run-dir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, DENSEHEAD_ASSETS=str(assets_dir)))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "replicas.json").exists():
            assert launcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        info = json.loads((tmp_path / "replicas.json").read_text())
    finally:
        launcher.send_signal(signal.SIGKILL)   # no clean-up of its own
        launcher.wait()
    pids = [info["proxy"]["pid"], info["replicas"][0]["pid"]]
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for pid in left:   # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "the replica or nginx outlived the killed launcher"


@pytest.mark.slow
def test_replicas_serve_tls_with_the_files_named_from_where_the_command_runs(nginx, tmp_path,
                                                                          assets_dir):
    """deployment.md's TLS command, run in the folder that holds the certificate and key."""
    import ssl
    import urllib.request

    from densehead.tools.browser import free_ports

    if not (openssl := shutil.which("openssl")):
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=tmp_path, check=True, capture_output=True)
    port = free_ports(2)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "densehead", "serve", "--replicas", "1", "--proxy-port",
         str(port), "--proxy-address", "127.0.0.1", "--proxy-cert", "cert.pem",
         "--proxy-key", "key.pem", "--run-dir", "run"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, DENSEHEAD_ASSETS=str(assets_dir), PYTHONPATH=str(ROOT)))
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    try:
        while not (tmp_path / "run" / "replicas.json").exists():   # written once all answer
            assert launcher.poll() is None, launcher.stderr.read()
            time.sleep(0.3)
        url = f"https://127.0.0.1:{port}/_stcore/health"
        with urllib.request.urlopen(url, timeout=30, context=unverified) as answer:
            assert answer.read().strip() == b"ok"
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    # a file that is not there is named at once, before anything starts
    assert main(["serve", "--replicas", "1", "--proxy-cert", str(tmp_path / "nope.pem"),
                 "--proxy-key", str(tmp_path / "key.pem")]) == 1


def test_a_port_whose_connections_are_still_closing_counts_as_free():
    """Restarting the replicas a few seconds after stopping them: the proxy's port has
    connections in TIME_WAIT, which nginx's own bind allows."""
    from densehead.dashboard.replicas import _check_free
    from densehead.tools.browser import free_ports

    port = free_ports(1)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()   # the server's side closes first: its port waits in TIME_WAIT
        client.close()
    _check_free("127.0.0.1", port)
