"""deploy/nginx/ and deploy/haproxy/: ``nginx -t`` and ``haproxy -c``, plus the websocket choices.

The nginx file is an http-level include: it is checked inside a minimal main config with a temp
prefix (pid, temp paths and error log under the test's directory), the way conf.d/ includes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from channels_scale.stack.configs import TUNNEL_TIMEOUT_S
from channels_scale.stack.runner import find_binary
from tests.deploy.deployfiles import (
    DEPLOY,
    WORKERS,
    directives,
    nginx_block,
    read,
    socket_path,
    strip_nginx_comments,
)

NGINX_CONF = DEPLOY / "nginx" / "channels-scale.conf"
TLS_MARKER = "#server {"


def _nginx_t(tmp_path: Path, include: Path) -> None:
    nginx = find_binary("nginx")
    assert nginx, "nginx is not installed: run ./scripts/install"
    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    main = prefix / "nginx.conf"
    main.write_text(
        f"pid {prefix}/nginx.pid;\n"
        "error_log stderr;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        + "".join(f"    {kind}_temp_path {prefix}/tmp/{kind};\n" for kind in ("proxy", "fastcgi"))
        + "".join(f"    {kind}_temp_path {prefix}/tmp/{kind};\n" for kind in ("uwsgi", "scgi"))
        + f"    client_body_temp_path {prefix}/tmp/body;\n"
        f"    include {include};\n"
        "}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-p", str(prefix), "-c", str(main), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr, done.stderr


def _assert_websocket_location(location: str) -> None:
    found = directives(location)
    connection = [d for d in found if d.startswith("proxy_set_header Connection ")]
    assert connection, "no Connection header"
    variable = connection[0].split()[-1]
    for expected in (
        "proxy_http_version 1.1",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Host $http_host",
        # Overwritten, never appended: the workers trust it (docs/security.md).
        "proxy_set_header X-Forwarded-For $remote_addr",
        "proxy_buffering off",
        f"proxy_read_timeout {TUNNEL_TIMEOUT_S}s",
        f"proxy_send_timeout {TUNNEL_TIMEOUT_S}s",
    ):
        assert expected in found, f"missing `{expected};` in location /"
    assert any(d.startswith("proxy_next_upstream error") for d in found)
    assert variable.startswith("$"), connection


def _assert_upgrade_map(text: str, variable: str) -> None:
    body = nginx_block(text, f"map $http_upgrade {variable}")
    assert directives(body) == ["default upgrade", "'' ''"]


def test_nginx_include_passes_nginx_t(tmp_path: Path) -> None:
    _nginx_t(tmp_path, NGINX_CONF)


def test_nginx_websocket_choices() -> None:
    text = NGINX_CONF.read_text()
    upstream = directives(nginx_block(text, "upstream channels_scale_workers"))
    assert upstream[0] == "least_conn"
    sockets = [d.split()[1] for d in upstream if d.startswith("server ")]
    assert sockets == [f"unix:{socket_path(i)}" for i in range(WORKERS)]
    location = nginx_block(text, "location /")
    _assert_websocket_location(location)
    assert "proxy_pass http://channels_scale_workers" in directives(location)
    variable = next(d for d in directives(location) if " Connection " in d).split()[-1]
    _assert_upgrade_map(text, variable)
    static = directives(nginx_block(text, "location /static/"))
    assert "alias /srv/channels-scale/static/" in static
    # An http-level include cannot set these: the guidance is in comments.
    assert "worker_connections" in text and "worker_rlimit_nofile" in text
    assert "worker_connections" not in strip_nginx_comments(text)


def test_nginx_commented_tls_server_passes_nginx_t(tmp_path: Path) -> None:
    """Uncommented, with a real (self-signed) certificate, the TLS block is a valid server."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    text = NGINX_CONF.read_text()
    assert TLS_MARKER in text
    plain, commented = text.split(TLS_MARKER, 1)
    tls = "\n".join(line.removeprefix("#") for line in (TLS_MARKER + commented).splitlines())
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=chat.example.com",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    live = "/etc/letsencrypt/live/chat.example.com/"
    assert f"{live}fullchain.pem" in tls and f"{live}privkey.pem" in tls
    tls = tls.replace(f"{live}fullchain.pem", str(cert)).replace(f"{live}privkey.pem", str(key))
    assert "listen 443 ssl" in tls
    _assert_websocket_location(nginx_block(tls, "location /"))
    include = tmp_path / "channels-scale-tls.conf"
    include.write_text(plain + tls)
    _nginx_t(tmp_path, include)


def test_compose_nginx_passes_nginx_t(tmp_path: Path) -> None:
    """deploy/compose/nginx.conf, with the `worker` service name as a local address.

    `server worker:8000 resolve` needs nginx >= 1.27.3 and Docker's DNS; the rest of the file is
    checked by the local nginx as it is.
    """
    text = read("compose/nginx.conf")
    upstream = directives(nginx_block(text, "upstream channels_scale_workers"))
    assert upstream[0] == "least_conn"
    assert any(re.fullmatch(r"zone channels_scale_workers \d+k", d) for d in upstream)
    servers = [d for d in upstream if d.startswith("server ")]
    assert len(servers) == 1 and servers[0].startswith("server worker:8000 resolve ")
    assert re.search(r"^resolver 127\.0\.0\.11 ", strip_nginx_comments(text), re.MULTILINE)
    location = nginx_block(text, "location /")
    _assert_websocket_location(location)
    variable = next(d for d in directives(location) if " Connection " in d).split()[-1]
    _assert_upgrade_map(text, variable)
    include = tmp_path / "compose-nginx.conf"
    include.write_text(text.replace("server worker:8000 resolve ", "server 127.0.0.1:8000 "))
    _nginx_t(tmp_path, include)


def test_haproxy_cfg_passes_haproxy_c() -> None:
    haproxy = find_binary("haproxy")
    assert haproxy, "haproxy is not installed: run ./scripts/install"
    done = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output


def _haproxy_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in read("haproxy/haproxy.cfg").splitlines():
        line = " ".join(raw.split("#", 1)[0].split())
        if not line:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(line, [])
        else:
            current.append(line)
    return sections


def test_haproxy_websocket_choices() -> None:
    sections = _haproxy_sections()
    defaults = sections["defaults"]
    assert "mode http" in defaults
    assert f"timeout tunnel {TUNNEL_TIMEOUT_S // 3600}h" in defaults
    assert "option redispatch" in defaults
    backend = sections["backend workers"]
    assert "balance leastconn" in backend
    assert "option httpchk GET /healthz" in backend
    assert "http-check expect status 200" in backend
    servers = [line.split() for line in backend if line.startswith("server ")]
    assert [s[1] for s in servers] == [f"worker-{i}" for i in range(WORKERS)]
    assert [s[2] for s in servers] == [f"unix@{socket_path(i)}" for i in range(WORKERS)]
    assert all("check" in s[3:] for s in servers)
    # Unix-socket servers are connected to after a chroot: there must not be one.
    assert not any(line.startswith("chroot") for line in sections["global"])
    assert sections["frontend public"][-1] == "default_backend workers"
