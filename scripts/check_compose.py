#!/usr/bin/env python3
"""Checks deploy/docker-compose.yml for what a container engine would only show when data is lost
or a service starts too early (none runs on the test machines):

- every image that keeps data has a named volume mounted where that image writes it (table below,
  with where each path comes from), and every named volume is declared and used;
- Kafka's log directory is the mounted volume, and the broker does not create topics on first use;
- the one-shot topic service creates every ordership topic and its dead-letter topic, with the
  partitions the services are told to expect;
- every long-running service has a healthcheck, and ordership's services are checked for readiness;
- the waiting rooms' Redis is a cluster of 3 masters and 3 replicas, created once by a one-shot
  service from every node after each is healthy, and the order service uses it as a cluster only
  once it exists;
- ordership's two services can be scaled (`docker compose up --scale order-service=3`): no
  container name, no host port, no instance id shared by their containers; the gateway and
  Prometheus find every container by the service's name.

Run by scripts/test.sh (with the test virtual environment's Python, which has PyYAML).
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "docker-compose.yml"

# Where each image keeps what must survive the container, and where that is documented.
DATA_PATHS = {
    # The official image's PGDATA default (its Dockerfile: ENV PGDATA /var/lib/postgresql/data).
    "postgres": "/var/lib/postgresql/data",
    # apache/kafka writes to log.dirs; its default (/tmp/kraft-combined-logs) is overridden by
    # KAFKA_LOG_DIRS, which must name the volume (checked below).
    "apache/kafka": "$KAFKA_LOG_DIRS",
    # prom/prometheus's CMD passes --storage.tsdb.path=/prometheus.
    "prom/prometheus": "/prometheus",
    # grafana/grafana's GF_PATHS_DATA (its Dockerfile) is /var/lib/grafana.
    "grafana/grafana": "/var/lib/grafana",
    # deploy/Dockerfile makes /var/lib/ordership for the development signing key.
    "ordership": "/var/lib/ordership",
}
# Images that keep nothing on purpose, and why.
STATELESS = {
    "redis": "the waiting rooms' queue may be lost (buyers rejoin with their queue tokens)",
    "jaegertracing/jaeger": "traces are kept in memory: a demo",
    "nginx": "the gateway only forwards requests",
}
# One-shot services (they exit); the rest run and need a healthcheck.
ONE_SHOT = {"migrate", "kafka-topics", "redis-cluster"}
# Services run as many times as --scale asks, and the port each listens on.
SCALED = {"order-service": 8080, "delivery-service": 8081}


def image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def topics() -> list[str]:
    """ordership's topics, read from the domain crate, each with its dead-letter topic."""
    source = (ROOT / "domain" / "src" / "message.rs").read_text()
    names = re.findall(r'pub const [A-Z_]+: &str = "(ordership\.[a-z.]+)";', source)
    if not names:
        sys.exit("no topic constants found in domain/src/message.rs")
    return sorted(n for name in names for n in (name, f"{name}.dlq"))


def scaling(services: dict) -> list[str]:
    """What `--scale` needs of the scaled services, the gateway and Prometheus."""
    errors = []
    gateway = (COMPOSE.parent / "gateway" / "nginx.conf").read_text()
    prometheus = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    discovered = {
        (name, config.get("port"))
        for job in prometheus["scrape_configs"]
        for config in job.get("dns_sd_configs", [])
        for name in config["names"]
    }
    for name, port in SCALED.items():
        service = services[name]
        for key in ("container_name", "ports", "hostname"):
            if key in service:
                errors.append(f"{name}: {key} is fixed, so --scale cannot run a second container")
        if "ORDERSHIP_KAFKA_INSTANCE_ID" in (service.get("environment") or {}):
            errors.append(f"{name}: one ORDERSHIP_KAFKA_INSTANCE_ID for every container (static members must differ)")
        command = " ".join(service.get("entrypoint") or []) + " ".join(service.get("command") or [])
        if "--kafka-instance-id" in command and "$$HOSTNAME" not in command:
            errors.append(f"{name}: the instance id must be the container's own ($$HOSTNAME)")
        if f"--http-addr 0.0.0.0:{port}" not in command:
            errors.append(f"{name}: does not listen on 0.0.0.0:{port}")
        if not re.search(rf"set \$(\w+) {name};\s*proxy_pass http://\$\1:{port};", gateway):
            errors.append(f"gateway: does not proxy to every container of {name} (by name, at request time)")
        if (name, port) not in discovered:
            errors.append(f"prometheus.yml: does not discover the containers of {name}:{port} by DNS")
    return errors


def redis_cluster(services: dict) -> list[str]:
    """The Redis Cluster: six nodes, joined by the one-shot with a replica per master, used as a
    cluster by the order service."""
    errors = []
    nodes = sorted(
        name for name, s in services.items()
        if image_name(s.get("image", "")) == "redis" and "--cluster-enabled yes" in " ".join(s.get("command") or [])
    )
    if len(nodes) != 6:
        errors.append(f"redis: {len(nodes)} cluster nodes, not 3 masters + 3 replicas: {nodes}")
    for node in nodes:
        command = " ".join(services[node]["command"])
        if "--cluster-announce-hostname" not in command or (services[node].get("environment") or {}).get("REDIS_NODE") != node:
            errors.append(f"{node}: does not announce its own service name to clients")
    create = services.get("redis-cluster", {})
    script = " ".join(create.get("command") or [])
    if "--cluster create" not in script or "--cluster-replicas 1" not in script:
        errors.append("redis-cluster: does not create the cluster with one replica per master")
    for node in nodes:
        if node not in script:
            errors.append(f"redis-cluster: does not join {node}")
        if (create.get("depends_on") or {}).get(node, {}).get("condition") != "service_healthy":
            errors.append(f"redis-cluster: does not wait for {node} to be healthy")
    order = services["order-service"]
    env = order.get("environment") or {}
    if str(env.get("ORDERSHIP_REDIS_CLUSTER")).lower() != "true":
        errors.append("order-service: ORDERSHIP_REDIS_CLUSTER is not true")
    named = [n.split(":")[0] for n in str(env.get("REDIS_URL", "")).split(",")]
    if not named or not set(named) <= set(nodes):
        errors.append(f"order-service: REDIS_URL names {named}, not cluster nodes {nodes}")
    if (order.get("depends_on") or {}).get("redis-cluster", {}).get("condition") != "service_completed_successfully":
        errors.append("order-service: does not wait for the cluster to be created")
    return errors


def main() -> int:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    errors: list[str] = []
    used: set[str] = set()

    for name, service in services.items():
        image = image_name(service.get("image", ""))
        env = service.get("environment") or {}
        mounts = {}
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                mounts[source] = target
                used.add(source)
                if source not in declared:
                    errors.append(f"{name}: volume {source!r} is not declared")
        if image in STATELESS:
            if mounts:
                errors.append(f"{name}: {image} is listed as keeping nothing, yet mounts {mounts}")
            continue
        if name in ONE_SHOT:
            continue
        wanted = DATA_PATHS.get(image)
        if wanted is None:
            errors.append(f"{name}: no data path known for image {image!r}: add it to the table")
            continue
        if wanted == "$KAFKA_LOG_DIRS":
            wanted = env.get("KAFKA_LOG_DIRS")
            if wanted is None:
                errors.append(f"{name}: KAFKA_LOG_DIRS is unset: the log would stay in /tmp")
                continue
            if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() != "false":
                errors.append(f"{name}: the broker must not create topics on first use")
        if wanted not in mounts.values():
            errors.append(f"{name}: {image} writes to {wanted}, but no named volume is mounted there ({mounts})")

    for volume in sorted(declared - used):
        errors.append(f"volume {volume!r} is declared but mounted nowhere")

    # The topic service creates every topic with the partitions the services expect.
    script = " ".join(services["kafka-topics"]["command"])
    for topic in topics():
        base = topic.removesuffix(".dlq")
        if base not in script:
            errors.append(f"kafka-topics does not create {topic}")
    if '"$$topic.dlq"' not in script:
        errors.append("kafka-topics does not create the dead-letter topics")
    partitions = re.findall(r"--partitions (\d+)", script)
    expected = {
        str(service.get("environment", {}).get("ORDERSHIP_KAFKA_PARTITIONS"))
        for service in services.values()
        if "ORDERSHIP_KAFKA_PARTITIONS" in (service.get("environment") or {})
    }
    if set(partitions) != expected or len(expected) != 1:
        errors.append(f"kafka-topics creates {partitions} partitions; the services expect {expected}")

    for name, service in services.items():
        if name in ONE_SHOT or image_name(service.get("image", "")) == "jaegertracing/jaeger":
            continue
        check = service.get("healthcheck")
        if not check:
            errors.append(f"{name}: no healthcheck")
        elif image_name(service.get("image", "")) == "ordership" and "/health/ready" not in " ".join(check["test"]):
            errors.append(f"{name}: the healthcheck must ask /health/ready (readiness), not liveness")

    errors += scaling(services)
    errors += redis_cluster(services)

    for error in errors:
        print(f"compose: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"compose: {len(services)} services, volumes {sorted(declared)} mounted where their images write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
