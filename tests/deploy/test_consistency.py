"""Every deploy flavour runs the worker exactly as ``channels-scale up`` does.

The uvicorn command lines of the systemd unit, the supervisor program, the Docker image and the
Kubernetes Deployment are parsed by uvicorn's own CLI and compared with ``worker_command()``:
the same flags given, the same effective settings, except where the worker listens (a unix socket
on a host, TCP 8000 in a container). The environment, socket paths and load-balancer server lists
are compared across files too.
"""

from __future__ import annotations

import configparser
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from channels_scale.settings import LAYERS
from channels_scale.stack.configs import WS_PROTOCOL
from tests.deploy.deployfiles import (
    DEPLOY,
    LISTEN_FLAGS,
    LISTEN_PARAMS,
    ROOT,
    WORKER_ENV,
    WORKERS,
    directives,
    dockerfile_exec_form,
    given_flags,
    nginx_block,
    parse_uvicorn,
    read,
    reference_args,
    socket_path,
    systemd_worker_argv,
    uvicorn_args,
)


def _supervisor_argv() -> list[str]:
    parser = configparser.RawConfigParser()
    parser.read_string(read("supervisor/channels-scale.conf"))
    command = parser["program:worker"]["command"].replace("%(process_num)d", "0")
    return shlex.split(command)


def _docker_argv() -> list[str]:
    return dockerfile_exec_form(read("compose/Dockerfile"), "CMD")


def _kubernetes_argv() -> list[str]:
    for document in yaml.safe_load_all(read("kubernetes/worker.yaml")):
        if document["kind"] == "Deployment":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            args = container["args"]
            assert isinstance(args, list)
            return [str(arg) for arg in args]
    raise AssertionError("no Deployment in worker.yaml")


FLAVOURS: dict[str, Callable[[], list[str]]] = {
    "systemd": lambda: systemd_worker_argv(0),
    "supervisor": _supervisor_argv,
    "docker": _docker_argv,
    "kubernetes": _kubernetes_argv,
}
ON_A_HOST = {"systemd", "supervisor"}


def test_reference_is_uvicorn_over_a_unix_socket() -> None:
    """Guards the comparison below: it is only meaningful for uvicorn's command line."""
    params = parse_uvicorn(reference_args())
    assert params["app"] == "channels_scale.stack.app:application"
    assert params["uds"] and params["loop"] == "uvloop" and params["http"] == "httptools"
    assert params["ws"] == WS_PROTOCOL and params["ws_per_message_deflate"] is False
    assert params["ws_max_size"] == 65536 and params["lifespan"] == "off"


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_uvicorn_flags_match_worker_command(flavour: str) -> None:
    expected_args = reference_args()
    args = uvicorn_args(FLAVOURS[flavour]())
    assert given_flags(args) - LISTEN_FLAGS == given_flags(expected_args) - LISTEN_FLAGS
    params, expected = parse_uvicorn(args), parse_uvicorn(expected_args)
    differing = {
        key: (params[key], expected[key])
        for key in expected.keys() - LISTEN_PARAMS
        if params[key] != expected[key]
    }
    assert differing == {}, f"{flavour} differs from worker_command(): {differing}"
    if flavour in ON_A_HOST:
        assert params["uds"] == socket_path(0)
    else:
        assert params["uds"] is None
        assert (params["host"], params["port"]) == ("0.0.0.0", 8000)


def _env_file(relative: str) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in read(relative).splitlines()
        if line.strip() and not line.startswith("#")
    )


def _environments() -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read_string(read("supervisor/channels-scale.conf"))
    supervisor = {}
    for item in parser["program:worker"]["environment"].split(","):
        key, _, value = item.strip().partition("=")
        supervisor[key] = value.strip('"')
    systemd = _env_file("systemd/env.example") | {"CHANNELS_SCALE_WORKER_ID": "%i"}
    compose = yaml.safe_load(read("compose/compose.yaml"))["services"]["worker"]["environment"]
    compose = compose | {"CHANNELS_SCALE_WORKER_ID": "(entrypoint)"}
    kubernetes: dict[str, str] = {}
    for name in ("configmap.yaml", "worker.yaml"):
        for document in yaml.safe_load_all(read(f"kubernetes/{name}")):
            if document["kind"] == "ConfigMap":
                kubernetes |= document["data"]
            if document["kind"] == "Deployment":
                for container in document["spec"]["template"]["spec"]["containers"]:
                    kubernetes |= {e["name"]: "(fieldRef)" for e in container["env"]}
    return {
        "systemd": systemd,
        "supervisor": supervisor,
        "compose": compose,
        "kubernetes": kubernetes,
    }


@pytest.mark.parametrize("flavour", ["systemd", "supervisor", "compose", "kubernetes"])
def test_worker_environment(flavour: str) -> None:
    env = _environments()[flavour]
    assert set(env) >= WORKER_ENV, WORKER_ENV - set(env)
    assert env["CHANNELS_SCALE_LAYER"] in LAYERS
    assert env["CHANNELS_SCALE_REDIS_URL"].startswith("redis://")
    args = reference_args()
    assert env["CHANNELS_SCALE_MAX_MESSAGE_BYTES"] == args[args.index("--ws-max-size") + 1]
    module, _, attribute = env["CHANNELS_SCALE_APP"].partition(":")
    # The example's app, on the PYTHONPATH each flavour gives (the image sets it in its ENV).
    app_file = ROOT / "example" / Path(*module.split(".")).with_suffix(".py")
    assert app_file.is_file() and f"\n{attribute} = " in app_file.read_text()
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings"


def test_supervisor_worker_id_is_the_process_number() -> None:
    assert _environments()["supervisor"]["CHANNELS_SCALE_WORKER_ID"] == "%(process_num)d"


def test_load_balancers_list_every_worker_socket() -> None:
    """nginx, HAProxy, supervisor's numprocs and the systemd socket template agree."""
    sockets = [socket_path(i) for i in range(WORKERS)]
    nginx = directives(
        nginx_block(read("nginx/channels-scale.conf"), "upstream channels_scale_workers")
    )
    assert [d.split()[1] for d in nginx if d.startswith("server ")] == [
        f"unix:{s}" for s in sockets
    ]
    haproxy = [
        line.split()[2]
        for line in read("haproxy/haproxy.cfg").splitlines()
        if line.strip().startswith("server ")
    ]
    assert haproxy == [f"unix@{s}" for s in sockets]
    parser = configparser.RawConfigParser()
    parser.read_string(read("supervisor/channels-scale.conf"))
    assert int(parser["program:worker"]["numprocs"]) == WORKERS
    assert int(parser["program:worker"]["numprocs_start"]) == 0
    for worker in range(WORKERS):
        argv = systemd_worker_argv(worker)
        assert argv[argv.index("--uds") + 1] == sockets[worker]


def test_readme_describes_every_file() -> None:
    readme = read("README.md")
    files = sorted(
        path.relative_to(DEPLOY).as_posix()
        for path in DEPLOY.rglob("*")
        if path.is_file() and path.name != "README.md"
    )
    assert [name for name in files if f"`{name}`" not in readme] == []
    for needle in (
        "LimitNOFILE",
        "/run/channels-scale/",
        "useradd",
        "numprocs",
        "worker_connections",
    ):
        assert needle in readme
