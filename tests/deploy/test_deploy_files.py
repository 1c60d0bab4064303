"""Static checks of everything under deploy/ (no container engine needed)."""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.nginx_runner import DEPLOY_DIR, REPO_ROOT, require_executable
from tests.deploy.proxy_checks import EchoBackend

YAML_FILES = sorted([*DEPLOY_DIR.rglob("*.yaml"), *DEPLOY_DIR.rglob("*.yml")])
TOML_FILES = sorted(DEPLOY_DIR.rglob("*.toml"))
K8S_DIR = DEPLOY_DIR / "kubernetes"
COMPOSE_FILE = DEPLOY_DIR / "compose.yaml"
COMPOSE_OVERLAYS = [
    DEPLOY_DIR / "redis" / "sentinel" / "compose.yaml",
    DEPLOY_DIR / "redis" / "cluster" / "compose.yaml",
]
DOCKERFILE = DEPLOY_DIR / "Dockerfile"


def rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --------------------------------------------------------------------------
# Every YAML / TOML file parses
# --------------------------------------------------------------------------


def test_deploy_tree_is_complete() -> None:
    expected = [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "README.md",
        "compose.yaml",
        ".env.example",
        "nginx/bff.conf",
        "traefik/traefik.yml",
        "traefik/dynamic.yml",
        "caddy/Caddyfile",
        "kubernetes/kustomization.yaml",
        "redis/sentinel/redis.conf",
        "redis/sentinel/sentinel.conf",
        "redis/sentinel/compose.yaml",
        "redis/cluster/redis-node.conf",
        "redis/cluster/compose.yaml",
    ]
    missing = [name for name in expected if not (DEPLOY_DIR / name).is_file()]
    assert not missing


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{rel(path)} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


@pytest.mark.parametrize("path", TOML_FILES, ids=rel)
def test_toml_parses(path: Path) -> None:
    with path.open("rb") as handle:
        assert tomllib.load(handle)


def test_there_are_files_to_parse() -> None:
    assert len(YAML_FILES) >= 10
    assert TOML_FILES


def test_example_toml_routes() -> None:
    with (DEPLOY_DIR / "bff.example.toml").open("rb") as handle:
        config = tomllib.load(handle)
    assert not any("secret" in key for key in config), "secrets belong in the environment"
    assert config["routes"]
    for route in config["routes"]:
        assert route["prefix"].startswith("/")
        assert re.match(r"https?://", route["upstream"])
        assert route.get("token", "required") in {"required", "optional", "none"}


# --------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------


def compose_services(path: Path) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(path)["services"]
    return services


def bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def test_compose_services_have_image_or_build() -> None:
    services = compose_services(COMPOSE_FILE)
    assert {"bff", "redis", "nginx", "api"} <= services.keys()
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_compose_gateway() -> None:
    services = compose_services(COMPOSE_FILE)
    bff = services["bff"]
    assert bff["deploy"]["replicas"] == 2
    build = bff["build"]
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert bff["command"] == ["bff", "serve", "--host", "0.0.0.0", "--port", "8080"]
    env = env_of(bff)
    assert env["BFF_SESSION_SECRET"].startswith("${BFF_SESSION_SECRET:?"), "must be required, not defaulted"
    assert env["BFF_ROUTES"] == "/api=http://api:9000"
    assert "9000" in services["api"]["command"]
    assert services["api"]["command"][:3] == ["python", "-m", "bff.demo_api"]
    assert env["BFF_REDIS_URL"].endswith("redis://redis:6379/0}")
    # drain time: stop_grace_period > BFF_SHUTDOWN_TIMEOUT
    grace = int(str(bff["stop_grace_period"]).rstrip("s"))
    assert grace > int(env["BFF_SHUTDOWN_TIMEOUT"])
    assert bff["read_only"] is True


def test_compose_trusts_exactly_the_nginx_address() -> None:
    compose = load_yaml(COMPOSE_FILE)
    services = compose["services"]
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["bff"]["ipv4_address"])
    subnet = ipaddress.ip_network(compose["networks"]["bff"]["ipam"]["config"][0]["subnet"])
    assert nginx_ip in subnet
    trusted = [item.strip() for item in env_of(services["bff"])["BFF_TRUSTED_PROXIES"].split(",")]
    assert str(nginx_ip) in trusted


def test_compose_nginx_and_redis() -> None:
    services = compose_services(COMPOSE_FILE)
    nginx = services["nginx"]
    volumes = nginx["volumes"]
    assert "./nginx/bff.conf:/etc/nginx/conf.d/default.conf:ro" in volumes
    assert "./certs:/etc/nginx/certs:ro" in volumes
    assert "443:443" in nginx["ports"]
    for source in bind_sources(nginx):
        if source != "./certs":  # created by the operator, see README
            assert (DEPLOY_DIR / source).exists(), source
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("overlay", COMPOSE_OVERLAYS, ids=rel)
def test_compose_overlays(overlay: Path) -> None:
    base = load_yaml(COMPOSE_FILE)
    subnet = ipaddress.ip_network(base["networks"]["bff"]["ipam"]["config"][0]["subnet"])
    services = compose_services(overlay)
    for name, service in services.items():
        assert name in base["services"] or "image" in service or "build" in service, name
        # relative paths resolve against deploy/ (the first compose file's dir)
        for source in bind_sources(service):
            assert (DEPLOY_DIR / source).is_file(), f"{name}: {source}"
        networks = service.get("networks", {})
        if isinstance(networks, dict):
            for network in networks.values():
                if network and "ipv4_address" in network:
                    assert ipaddress.ip_address(network["ipv4_address"]) in subnet
    url = env_of(services["bff"])["BFF_REDIS_URL"]
    hosts = re.sub(r"^[a-z+]+://(?:[^@/]*@)?", "", url).split("/", 1)[0].split(",")
    for host_port in hosts:
        host, port = host_port.split(":")
        assert host in services, host
        service_text = " ".join(str(part) for part in services[host].get("command", []))
        if url.startswith("redis+cluster://"):
            assert f"--port {port}" in service_text or port in service_text
        else:
            assert url.startswith("redis+sentinel://") and url.endswith("/mymaster")
            assert "--sentinel" in service_text and port == "26379"


def test_env_example_and_gitignore() -> None:
    example = (DEPLOY_DIR / ".env.example").read_text(encoding="utf-8")
    for name in ("BFF_ISSUER", "BFF_CLIENT_ID", "BFF_CLIENT_SECRET", "BFF_PUBLIC_URL", "BFF_SESSION_SECRET"):
        assert re.search(rf"^{name}=", example, re.M), name
    assert re.search(r"^BFF_SESSION_SECRET=$", example, re.M), "no real secret in the example"
    ignored = (DEPLOY_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert "/.env" in ignored and "/certs/" in ignored


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    instructions = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_stages_user_healthcheck() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert all("python:${PYTHON_VERSION}-slim" in item for item in froms)
    assert ("ARG", "PYTHON_VERSION=3.11") in instructions
    builder = froms[0].split()[-1]
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any("pip wheel" in run for run in runs)
    assert any(keyword == "COPY" and rest.startswith(f"--from={builder} ") for keyword, rest in instructions)

    final_stage = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :]
    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users, "the runtime stage must drop root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric UID, so Kubernetes runAsNonRoot can verify it"
    assert ("EXPOSE", "8080") in final_stage
    assert any(keyword == "HEALTHCHECK" for keyword, _ in final_stage)
    cmd = [rest for keyword, rest in final_stage if keyword == "CMD"]
    assert cmd == ['["bff", "serve", "--host", "0.0.0.0", "--port", "8080"]']


def healthcheck_code() -> str:
    for keyword, rest in dockerfile_instructions():
        if keyword == "HEALTHCHECK":
            exec_form = rest[rest.index("CMD ") + 4 :]
            argv = yaml.safe_load(exec_form)  # a JSON array is valid YAML
            assert argv[:2] == ["python", "-c"], "slim images have no curl: use python"
            code: str = argv[2]
            return code
    raise AssertionError("no HEALTHCHECK")


def test_dockerfile_healthcheck_probes_healthz() -> None:
    code = healthcheck_code()
    assert "http://127.0.0.1:8080/healthz" in code
    compile(code, "<HEALTHCHECK>", "exec")
    with EchoBackend() as backend:
        ok = subprocess.run(
            [sys.executable, "-c", code.replace("127.0.0.1:8080", backend.host_port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
        assert backend.requests[-1].path == "/healthz"
    # nothing listening any more: the check must fail
    down = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:8080", backend.host_port)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert down.returncode != 0


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for pattern in (".git", ".venv", "**/.env", "deploy/certs", "**/*.pem"):
        assert pattern in patterns, pattern
    # the wheel needs these
    for needed in ("pyproject.toml", "bff", "src"):
        assert needed not in patterns


# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------


def k8s_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(path):
            assert "namespace" not in doc["metadata"], f"{path.name}: keep manifests namespace-agnostic"
            objects[doc["kind"]] = doc
    return objects


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    listed = set(kustomization["resources"])
    present = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= k8s_objects().keys()
    (container,) = k8s_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert kustomization["images"][0]["name"] == container["image"]


def test_deployment() -> None:
    objects = k8s_objects()
    deployment = objects["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert port_names == {"http": 8080}

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?provider=cached"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] in port_names

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts, "read-only root fs: give Python a writable /tmp"

    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]

    # graceful shutdown: preStop sleep + BFF_SHUTDOWN_TIMEOUT < grace period
    grace = pod["terminationGracePeriodSeconds"]
    assert grace == 40
    shutdown = int(objects["ConfigMap"]["data"]["BFF_SHUTDOWN_TIMEOUT"])
    assert shutdown == 30
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + shutdown < grace

    refs = {
        next(iter(source.values()))["name"]: next(iter(source))
        for source in container["envFrom"]
    }
    assert refs == {
        objects["ConfigMap"]["metadata"]["name"]: "configMapRef",
        objects["Secret"]["metadata"]["name"]: "secretRef",
    }


def test_service_and_pdb_select_the_deployment_pods() -> None:
    objects = k8s_objects()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["selector"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == "http"
    pdb = objects["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < objects["Deployment"]["spec"]["replicas"]


def test_configmap_and_secret_split() -> None:
    objects = k8s_objects()
    config = objects["ConfigMap"]["data"]
    secret = objects["Secret"]["stringData"]
    assert all(key.startswith("BFF_") for key in [*config, *secret])
    assert not config.keys() & secret.keys()
    assert not any("SECRET" in key or key == "BFF_REDIS_URL" for key in config)
    assert {"BFF_SESSION_SECRET", "BFF_CLIENT_SECRET", "BFF_REDIS_URL"} <= secret.keys()
    assert all(isinstance(value, str) for value in config.values()), "ConfigMap values must be strings"
    for required in ("BFF_ISSUER", "BFF_CLIENT_ID", "BFF_PUBLIC_URL", "BFF_TRUSTED_PROXIES"):
        assert config[required]
    # Placeholders are marked, and the session secret one is too short to be
    # accepted (>= 32 bytes required), so the example can never run as is.
    for value in secret.values():
        assert "REPLACE_ME" in value
    assert len(secret["BFF_SESSION_SECRET"].encode()) < 32
    assert "PLACEHOLDER" in (K8S_DIR / "secret.example.yaml").read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Traefik (not packaged for Debian: structural checks)
# --------------------------------------------------------------------------


def test_traefik_static_config() -> None:
    static = load_yaml(DEPLOY_DIR / "traefik" / "traefik.yml")
    entry_points = static["entryPoints"]
    assert entry_points["websecure"]["address"] == ":443"
    assert "tls" in entry_points["websecure"]["http"]
    redirect = entry_points["web"]["http"]["redirections"]["entryPoint"]
    assert redirect["to"] == "websecure" and redirect["scheme"] == "https"
    assert static["providers"]["file"]["directory"]
    # client-supplied X-Forwarded-* must not be trusted blindly
    assert "insecure" not in str(static.get("entryPoints"))


def test_traefik_dynamic_config() -> None:
    dynamic = load_yaml(DEPLOY_DIR / "traefik" / "dynamic.yml")
    http = dynamic["http"]
    for name, router in http["routers"].items():
        assert router["service"] in http["services"], name
        assert "tls" in router, name
        assert router["entryPoints"] == ["websecure"], name
        for middleware in router.get("middlewares", []):
            assert middleware in http["middlewares"], middleware
        assert "Host(`bff.example.com`)" in router["rule"]
    load_balancer = http["services"]["bff"]["loadBalancer"]
    assert load_balancer["passHostHeader"] is True
    assert all(server["url"].endswith(":8080") for server in load_balancer["servers"])
    assert len(load_balancer["servers"]) == 2
    assert load_balancer["healthCheck"]["path"] in {"/healthz", "/readyz"}
    assert str(load_balancer["responseForwarding"]["flushInterval"]).startswith("-"), "flush at once"
    metrics = http["routers"]["bff-metrics"]
    assert "Path(`/metrics`)" in metrics["rule"] and metrics["priority"] > 0
    certificates = dynamic["tls"]["certificates"]
    assert certificates[0]["certFile"] and certificates[0]["keyFile"]


# --------------------------------------------------------------------------
# Caddy (Debian package "caddy")
# --------------------------------------------------------------------------

CADDYFILE = DEPLOY_DIR / "caddy" / "Caddyfile"


def test_caddyfile_structure() -> None:
    text = CADDYFILE.read_text(encoding="utf-8")
    assert re.search(r"^bff\.example\.com \{$", text, re.M)
    assert re.search(r"^\treverse_proxy .*:8080.* \{$", text, re.M)
    assert re.search(r"^\t\tflush_interval -1$", text, re.M)
    assert re.search(r"^\t\thealth_uri /(healthz|readyz)$", text, re.M)
    assert "respond @metrics 404" in text


def test_caddy_validates_the_caddyfile(tmp_path: Path) -> None:
    caddy = require_executable("caddy", hint="Debian package caddy")
    env = {
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": "/usr/bin:/bin",
    }
    validate = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )
    assert validate.returncode == 0, validate.stderr
    assert "Valid configuration" in validate.stdout + validate.stderr
    assert "not formatted" not in validate.stderr
    formatted = subprocess.run(
        [caddy, "fmt", str(CADDYFILE)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=True,
    )
    assert formatted.stdout == CADDYFILE.read_text(encoding="utf-8"), "run `caddy fmt --overwrite`"


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------


def test_readme_covers_the_essentials() -> None:
    readme = (DEPLOY_DIR / "README.md").read_text(encoding="utf-8")
    for needle in (
        "docker build -f deploy/Dockerfile",
        "/bff/callback",
        "/bff/backchannel-logout",
        "BFF_TRUSTED_PROXIES",
        "BFF_PUBLIC_URL",
        "openssl req",
        "X-Forwarded-Proto",
        "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster",
        "redis+cluster://n1:7000,n2:7001,n3:7002",
    ):
        assert needle in readme, needle
    # every file the README points at exists
    for match in re.finditer(r"`(deploy/[\w./-]+)`", readme):
        target = REPO_ROOT / match.group(1)
        assert target.exists() or match.group(1).startswith(("deploy/certs", "deploy/.env")), match.group(1)


def test_readme_openssl_command_works(tmp_path: Path) -> None:
    """The certificate recipe in the README produces a usable key pair."""
    openssl = require_executable("openssl", hint="Debian package openssl")
    readme = (DEPLOY_DIR / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(openssl req .*?)\n```", readme, re.S)
    assert block, "README: an ```sh block starting with `openssl req`"
    command = shlex.split(block.group(1).replace("\\\n", " "))
    command[0] = openssl
    command = [part.replace("deploy/certs/", f"{tmp_path}/") for part in command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    assert (tmp_path / "fullchain.pem").is_file() and (tmp_path / "privkey.pem").is_file()
