#!/usr/bin/env python3
"""Checks deploy/kubernetes/ offline, and against the ordership binary it deploys:

- the kustomization names every manifest of the folder (examples, `*.example.yaml`, on purpose
  not), and every document of every manifest is valid for Kubernetes' own JSON schemas
  (kubernetes-validate, strict: an unknown or misspelt field is an error);
- every container runs a subcommand the binary has, and every environment variable it is given
  (its own, and the keys of the ConfigMaps it takes whole) is one the binary reads, checked against
  `ordership <subcommand> --help`; values of options with a fixed set are in that set;
- the HTTP address's port is the container's `http` port, probes and Services name ports the
  container has, secrets and ConfigMaps referred to exist (the secret in its example), mounted
  files are where the variables that name them point, and the pods run as the image's user;
- the binary, started in memory on a free port, answers the probe paths and the scrape path, and
  what the autoscalers scale on is a metric it exports for a consumer group it has.

Run by scripts/test.sh:  python scripts/check_kubernetes.py target/debug/ordership
"""

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
# Variables the binary reads without listing them in --help: the OpenTelemetry exporter's own
# (the OTLP specification's names, read by the exporter crate; bootstrap/src/wiring/telemetry.rs).
STANDARD_VARIABLES = re.compile(r"^OTEL_[A-Z_]+$")
WORKLOADS = {"Deployment", "Job"}


class Checks:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.errors.append(message)


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def help_text(binary: str, *subcommand: str) -> str:
    return subprocess.run(
        [binary, *subcommand, "--help"], check=True, capture_output=True, text=True
    ).stdout


def subcommands(binary: str) -> set[str]:
    text = help_text(binary).split("Commands:", 1)[1].split("Options:", 1)[0]
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def options(binary: str, subcommand: str) -> dict[str, set[str] | None]:
    """The environment variables a subcommand reads, each with its possible values (or None)."""
    found: dict[str, set[str] | None] = {}
    # One option per entry: its line and its (wrapped) description up to the next option.
    for entry in re.split(r"\n\s+(?=-)", help_text(binary, subcommand)):
        flat = " ".join(entry.split())
        env = re.search(r"\[env: ([A-Z0-9_]+)", flat)
        if not env:
            continue
        values = re.search(r"\[possible values: ([^\]]+)\]", flat)
        found[env.group(1)] = (
            {v.strip() for v in values.group(1).split(",")} if values else None
        )
    return found


def check_manifests(checks: Checks) -> list[tuple[Path, dict]]:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in files if name.endswith(".example.yaml")}
    for name in sorted(files - examples - listed):
        checks.errors.append(f"{name}: not in kustomization.yaml's resources")
    for name in sorted(listed - files):
        checks.errors.append(f"kustomization.yaml names {name}, which does not exist")
    for name in sorted(listed & examples):
        checks.errors.append(f"kustomization.yaml applies the example {name}")
    documents = []
    for name in sorted(files):
        for doc in load(FOLDER / name):
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                # The first line says what is wrong; the rest is the schema.
                checks.errors.append(f"{name}: {doc.get('kind')}/{doc['metadata'].get('name')}: {str(e).splitlines()[0]}")
            except kubernetes_validate.InvalidSchemaError as e:
                checks.errors.append(f"{name}: {doc.get('kind')}: no schema: {e}")
            documents.append((FOLDER / name, doc))
    print(f"ok: {len(documents)} Kubernetes objects in {len(files)} files valid for {KUBERNETES_VERSION} (strict)")
    return documents


def check_workloads(checks: Checks, documents: list[tuple[Path, dict]], binary: str) -> list[dict]:
    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in documents:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    config_maps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    image_user = re.search(r"--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text())
    checks.expect(image_user is not None, "deploy/Dockerfile: no --uid for the image's user")
    known = subcommands(binary)
    started = []
    for kind in sorted(WORKLOADS):
        for name, doc in by_kind.get(kind, {}).items():
            pod = doc["spec"]["template"]["spec"]
            where = f"{kind}/{name}"
            checks.expect(pod["securityContext"].get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
            if image_user:
                checks.expect(
                    pod["securityContext"].get("runAsUser") == int(image_user.group(1)),
                    f"{where}: runAsUser is not the image's user {image_user.group(1)}",
                )
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                at = f"{where}/{container['name']}"
                context = container.get("securityContext", {})
                checks.expect(context.get("readOnlyRootFilesystem") is True, f"{at}: root file system writable")
                checks.expect(context.get("allowPrivilegeEscalation") is False, f"{at}: privilege escalation allowed")
                checks.expect(context.get("capabilities", {}).get("drop") == ["ALL"], f"{at}: capabilities not all dropped")
                checks.expect("memory" in container.get("resources", {}).get("limits", {}), f"{at}: no memory limit")
                subcommand = container["args"][0]
                if subcommand not in known:
                    checks.errors.append(f"{at}: `ordership {subcommand}` does not exist")
                    continue
                readable = options(binary, subcommand)
                env = environment(checks, at, container, config_maps, secrets)
                for variable, value in env.items():
                    if STANDARD_VARIABLES.match(variable):
                        continue
                    if variable not in readable:
                        checks.errors.append(f"{at}: `ordership {subcommand}` reads no {variable}")
                    elif readable[variable] is not None and value is not None and value not in readable[variable]:
                        checks.errors.append(f"{at}: {variable}={value} is not one of {sorted(readable[variable])}")
                for mount in container.get("volumeMounts", []):
                    checks.expect(mount["name"] in volumes, f"{at}: mounts {mount['name']}, which is no volume of the pod")
                check_files(checks, at, container, env, volumes, secrets)
                if kind == "Deployment":
                    check_ports(checks, at, container, env)
                    started.append({"subcommand": subcommand, "container": container, "pod": doc["spec"]["template"]})
    for name, service in by_kind.get("Service", {}).items():
        selected = [d for d in by_kind.get("Deployment", {}).values()
                    if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                           for k, v in service["spec"]["selector"].items())]
        checks.expect(len(selected) == 1, f"Service/{name} selects {len(selected)} Deployments")
        for deployment in selected:
            ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                checks.expect(port["targetPort"] in ports, f"Service/{name}: no container port {port['targetPort']}")
    for name, budget in by_kind.get("PodDisruptionBudget", {}).items():
        checks.expect(name in by_kind.get("Deployment", {}), f"PodDisruptionBudget/{name}: no such Deployment")
    for name, scaler in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = scaler["spec"]["scaleTargetRef"]["name"]
        checks.expect(target in by_kind.get("Deployment", {}), f"HorizontalPodAutoscaler/{name}: no Deployment {target}")
    return started


def environment(checks, at, container, config_maps, secrets) -> dict[str, str | None]:
    """Every variable the container gets, with its value where the manifests hold it."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        if name not in config_maps:
            checks.errors.append(f"{at}: no ConfigMap {name}")
            continue
        env.update(config_maps[name]["data"])
    for variable in container.get("env", []):
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            secret = secrets.get(reference["name"])
            checks.expect(
                secret is not None and reference["key"] in secret.get("stringData", {}),
                f"{at}: {variable['name']} from secret {reference['name']}/{reference['key']}, which no manifest or example has",
            )
        env[variable["name"]] = variable.get("value")
    return env


def check_files(checks, at, container, env, volumes, secrets) -> None:
    """Variables that name files point into a mounted volume that holds them."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    for variable, value in env.items():
        if not (value and value.startswith("/etc/")):
            continue
        directory, file = value.rsplit("/", 1)
        volume = volumes.get(mounts.get(directory, ""))
        if volume is None:
            checks.errors.append(f"{at}: {variable}={value}, but nothing is mounted at {directory}")
            continue
        secret = volume.get("secret")
        if secret:
            paths = [item["path"] for item in secret.get("items", [])]
            checks.expect(file in paths, f"{at}: {variable}: the volume at {directory} holds no {file}")
            keys = secrets.get(secret["secretName"], {}).get("stringData", {})
            for item in secret.get("items", []):
                checks.expect(item["key"] in keys, f"{at}: secret {secret['secretName']} has no key {item['key']}")


def check_ports(checks, at, container, env) -> None:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    address = env.get("ORDERSHIP_HTTP_ADDR") or ""
    checks.expect(
        address.rsplit(":", 1)[-1] == str(ports.get("http")),
        f"{at}: ORDERSHIP_HTTP_ADDR={address} does not listen on the http port {ports.get('http')}",
    )
    checks.expect(address.startswith("0.0.0.0:"), f"{at}: ORDERSHIP_HTTP_ADDR={address} is not reachable from outside the pod")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        checks.expect(probe in container, f"{at}: no {probe}")
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        checks.expect(port in ports or port in ports.values(), f"{at}: {probe} port {port} is not a container port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def check_running(checks: Checks, binary: str, started: list[dict]) -> None:
    """The binary answers each Deployment's probes and scrape path. A service alone needs
    PostgreSQL and Kafka; `ordership all` (both services in memory) serves the same operations
    routes, so it stands in for each."""
    for workload in started:
        container, annotations = workload["container"], workload["pod"]["metadata"].get("annotations", {})
        port = free_port()
        command = [binary, "all", "--dev-auth", "--http-addr", f"127.0.0.1:{port}"]
        environment = {"PATH": "/usr/bin:/bin", "ORDERSHIP_DEV_KEY_FILE": f"/tmp/check-kubernetes-{port}.pem"}
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status, _ = get(f"http://127.0.0.1:{port}/health/live")
                    break
                except OSError:
                    time.sleep(0.1)
            if status != 200:
                checks.errors.append(f"`ordership {workload['subcommand']}` did not start: {process.stderr.read() if process.poll() is not None else 'no answer'}")
                continue
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                path = container[probe]["httpGet"]["path"]
                status, _ = get(f"http://127.0.0.1:{port}{path}")
                checks.expect(status == 200, f"{workload['subcommand']}: {probe} {path} answered {status}")
            path = annotations.get("prometheus.io/path", "/metrics")
            status, body = get(f"http://127.0.0.1:{port}{path}")
            checks.expect(status == 200 and "ordership_" in body, f"{workload['subcommand']}: scrape path {path} answered {status}")
            checks.expect(annotations.get("prometheus.io/port") == str(container["ports"][0]["containerPort"]),
                          f"{workload['subcommand']}: the scrape port is not the http port")
            print(f"ok: {workload['subcommand']}'s probes and {path} answered (by `ordership all`)")
        finally:
            process.terminate()
            process.wait(timeout=30)


def check_scaling_metrics(checks: Checks, documents: list[tuple[Path, dict]]) -> None:
    """What the autoscalers scale on is a metric the binary exports, for a group it has."""
    source = "\n".join(p.read_text() for p in (ROOT / "bootstrap" / "src").rglob("*.rs"))
    # The consumer groups: `pub const CONSUMER: &str = "<service>.<consumer>"` in the application.
    groups = set(re.findall(r'pub const CONSUMER: &str = "([^"]+)";',
                            "\n".join(p.read_text() for p in (ROOT / "application" / "src").rglob("*.rs"))))
    checks.expect(len(groups) >= 2, f"application/src: consumer groups not found ({groups})")
    for _, doc in documents:
        if doc["kind"] != "HorizontalPodAutoscaler":
            continue
        at = f"HorizontalPodAutoscaler/{doc['metadata']['name']}"
        for metric in doc["spec"]["metrics"]:
            if metric["type"] != "External":
                continue
            name = metric["external"]["metric"]["name"]
            checks.expect(f'"{name}"' in source, f"{at}: the binary exports no {name}")
            group = metric["external"]["metric"]["selector"]["matchLabels"]["group"]
            checks.expect(group in groups, f"{at}: no consumer group {group} (there are {sorted(groups)})")
            checks.expect(group.split(".")[0] == doc["spec"]["scaleTargetRef"]["name"],
                          f"{at}: scales {doc['spec']['scaleTargetRef']['name']} on another service's group {group}")


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: check_kubernetes.py <ordership binary>")
    binary = sys.argv[1]
    checks = Checks()
    documents = check_manifests(checks)
    started = check_workloads(checks, documents, binary)
    check_scaling_metrics(checks, documents)
    if not checks.errors:
        check_running(checks, binary, started)
    for error in checks.errors:
        print(f"deploy/kubernetes: {error}", file=sys.stderr)
    if checks.errors:
        return 1
    print("ok: the manifests run what the binary has, with settings it reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
