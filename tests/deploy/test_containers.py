"""deploy/compose/ and deploy/kubernetes/: static checks (no Docker engine or cluster here).

The YAML is parsed and the websocket-relevant keys asserted: replicas, probes on /healthz, stop
grace periods against uvicorn's graceful shutdown, tunnel timeouts, and that names referring to
each other (services, ports, ConfigMap, labels) match. ``kubectl kustomize`` renders the
Kubernetes directory when kubectl is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from channels_scale.stack.configs import TUNNEL_TIMEOUT_S
from tests.deploy.deployfiles import (
    DEPLOY,
    ROOT,
    WORKER_ENV,
    WORKERS,
    dockerfile_exec_form,
    dockerfile_instruction,
    read,
    reference_args,
    uvicorn_args,
)

K8S = DEPLOY / "kubernetes"


def _graceful_shutdown_s() -> float:
    args = reference_args()
    return float(args[args.index("--timeout-graceful-shutdown") + 1])


def _duration_s(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "m" else 1)


# --- compose -------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(read("compose/compose.yaml"))
    assert isinstance(data, dict)
    return data


def test_compose_worker_service() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == WORKERS
    # The uvicorn command line is the image's CMD (checked against worker_command elsewhere).
    assert "command" not in worker and "entrypoint" not in worker
    # Workers are reachable on the compose network only; nginx is the published service.
    assert "ports" not in worker
    assert [str(port) for port in worker["expose"]] == ["8000"]
    assert WORKER_ENV - {"CHANNELS_SCALE_WORKER_ID"} <= set(worker["environment"])
    redis_url = worker["environment"]["CHANNELS_SCALE_REDIS_URL"]
    assert re.fullmatch(r"redis://redis:6379/\d+", redis_url)
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["stop_signal"] == "SIGTERM"
    assert _duration_s(worker["stop_grace_period"]) >= _graceful_shutdown_s() + 5
    assert worker["ulimits"]["nofile"]["soft"] >= 65536
    assert worker["sysctls"]["net.core.somaxconn"] >= 4096
    # Shared database: one SQLite per container would split sessions between workers.
    assert worker["environment"]["DATABASE_URL"].startswith("postgres://")
    assert "postgres" in services


def test_compose_build_and_nginx_wiring() -> None:
    compose_dir = DEPLOY / "compose"
    services = _compose()["services"]
    for name in ("worker", "migrate"):
        build = services[name]["build"]
        context = (compose_dir / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()
        assert services[name]["image"] == services["worker"]["image"]
    nginx = services["nginx"]
    mounts = [volume.split(":") for volume in nginx["volumes"]]
    assert ["./nginx.conf", "/etc/nginx/conf.d/default.conf", "ro"] in mounts
    assert (compose_dir / "nginx.conf").is_file()
    assert "server worker:8000 " in read("compose/nginx.conf")
    assert nginx["depends_on"]["worker"]["condition"] == "service_healthy"
    version = re.fullmatch(r"nginx:(\d+)\.(\d+)-alpine", nginx["image"])
    assert version and (int(version[1]), int(version[2])) >= (1, 27), "`resolve` needs 1.27.3"
    redis = services["redis"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "noeviction" in redis["command"]


def test_dockerfile() -> None:
    text = read("compose/Dockerfile")
    assert dockerfile_instruction(text, "FROM") == "python:3.11-slim"
    assert re.search(r"COPY --from=ghcr\.io/astral-sh/uv:[\d.]+ /uv ", text)
    syncs = re.findall(r"uv sync [^\n\\]*", text)
    assert len(syncs) == 2 and all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert dockerfile_instruction(text, "USER") != "root"
    assert dockerfile_instruction(text, "EXPOSE") == "8000"
    assert "/healthz" in dockerfile_instruction(text, "HEALTHCHECK")
    entrypoint = " ".join(dockerfile_exec_form(text, "ENTRYPOINT"))
    assert "CHANNELS_SCALE_WORKER_ID" in entrypoint and 'exec "$@"' in entrypoint
    args = uvicorn_args(dockerfile_exec_form(text, "CMD"))
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8000"
    assert "--uds" not in args
    ignore = read("compose/Dockerfile.dockerignore").split()
    assert {".venv", ".git"} <= set(ignore)


# --- kubernetes ----------------------------------------------------------------------------------


def _k8s() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")
    for name in listed:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = document
    return objects


def _selects(service: dict[str, Any], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_kubernetes_worker_deployment() -> None:
    objects = _k8s()
    deployment = objects["Deployment", "channels-scale-worker"]
    spec = deployment["spec"]
    assert spec["replicas"] == WORKERS
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz", probe
        assert ports.get(check["port"], check["port"]) == 8000, probe
    args = uvicorn_args(container["args"])  # args keep the image's ENTRYPOINT
    assert "command" not in container
    assert args[args.index("--port") + 1] == str(ports["http"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + _graceful_shutdown_s() + 5
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    env = {e["name"]: e for e in container["env"]}
    field = env["CHANNELS_SCALE_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    (config_ref,) = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    config = objects["ConfigMap", config_ref]["data"]
    assert WORKER_ENV - {"CHANNELS_SCALE_WORKER_ID"} <= set(config)
    assert all(isinstance(value, str) for value in config.values())
    assert pod["securityContext"]["runAsNonRoot"] is True
    service = objects["Service", "channels-scale-worker"]
    assert _selects(service, deployment)
    assert service["spec"]["ports"][0]["targetPort"] in ports
    budget = objects["PodDisruptionBudget", "channels-scale-worker"]
    assert budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_kubernetes_redis_and_config_agree() -> None:
    objects = _k8s()
    redis = objects["Deployment", "channels-scale-redis"]
    service = objects["Service", "channels-scale-redis"]
    assert _selects(service, redis)
    assert redis["spec"]["replicas"] == 1
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert "noeviction" in container["args"]
    url = objects["ConfigMap", "channels-scale"]["data"]["CHANNELS_SCALE_REDIS_URL"]
    match = re.fullmatch(r"redis://([a-z0-9-]+):(\d+)/\d+", url)
    assert match, url
    assert match[1] == service["metadata"]["name"]
    assert int(match[2]) == service["spec"]["ports"][0]["port"]


def test_kubernetes_ingress_timeouts() -> None:
    objects = _k8s()
    ingress = objects["Ingress", "channels-scale"]
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-read-timeout"] == str(TUNNEL_TIMEOUT_S)
    assert annotations[prefix + "proxy-send-timeout"] == str(TUNNEL_TIMEOUT_S)
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    worker_service = objects["Service", backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in worker_service["spec"]["ports"]}


def test_kubectl_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the YAML checks above still run)")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = list(yaml.safe_load_all(done.stdout))
    assert {doc["metadata"].get("namespace") for doc in rendered if doc["kind"] != "Namespace"} == {
        "channels-scale"
    }
    assert len(rendered) == len(_k8s())
