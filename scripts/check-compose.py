#!/usr/bin/env python3
"""Offline checks of docker-compose.yml, Dockerfile and .dockerignore, for machines without
Docker (CI here): the seven services, their images, ports, healthchecks and start order, and
that aqueduct's and the Schema Registry's settings point at the other services the way they
listen. Every problem is
reported, not just the first.

Usage: scripts/check-compose.py [COMPOSE_FILE]   (default: docker-compose.yml in the repo)
Needs PyYAML (Debian: python3-yaml; or pip install pyyaml). When `docker compose` or
`docker-compose` is on PATH, its `config --quiet` validates the file as well.
Exit status: 0 all good, 1 problems found, 2 the file cannot be read or parsed.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
SERVICES = {"kafka", "cassandra", "schema-registry", "standin", "aqueduct", "prometheus", "grafana"}

problems: list[str] = []

# The single-node Kafka settings live once, in stack/templates/server.properties. The compose
# broker carries each of them (as the image's KAFKA_<KEY> variables) but these, which say
# where this node listens and keeps its data.
KAFKA_TEMPLATE = REPO / "stack/templates/server.properties"
KAFKA_NODE_KEYS = {
    "node.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.voters",
    "log.dirs",
}


# The registry's settings live once too, in stack/templates/karapace.env (the KARAPACE_*
# variables scripts/stack gives Karapace); the compose registry carries each of them but these,
# which say where this one listens, which broker it uses and its group. Its image is the
# release of the archive scripts/stack installs (vendor/karapace-<version>.tar.gz).
REGISTRY_TEMPLATE = REPO / "stack/templates/karapace.env"
REGISTRY_NODE_KEYS = {
    "KARAPACE_HOST",
    "KARAPACE_PORT",
    "KARAPACE_ADVERTISED_HOSTNAME",
    "KARAPACE_BOOTSTRAP_URI",
    "KARAPACE_GROUP_ID",
    "KARAPACE_CLIENT_ID",
}


def problem(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def published(service: dict) -> set[tuple[str, int, int]]:
    """(host ip, host port, container port) of each short-syntax port mapping."""
    out = set()
    for port in service.get("ports") or []:
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            out.add((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.add(("0.0.0.0", int(parts[0]), int(parts[1])))
    return out


def healthcheck_command(name: str, service: dict) -> str:
    check = service.get("healthcheck") or {}
    test = check.get("test")
    if not test or check.get("disable"):
        problem(name, "no healthcheck (aqueduct waits for service_healthy)")
        return ""
    if isinstance(test, str):
        return test
    if test[0] not in ("CMD", "CMD-SHELL"):
        problem(name, f"healthcheck test starts with {test[0]!r}, not CMD or CMD-SHELL")
    return " ".join(test[1:])


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """NAME://host:port,... as {NAME: (host, port)}."""
    out = {}
    for item in filter(None, value.split(",")):
        m = re.fullmatch(r"([A-Z_]+)://([^:]*):(\d+)", item.strip())
        if m:
            out[m[1]] = (m[2], int(m[3]))
    return out


# The template's placeholders for the replicas of the internal topics, as scripts/stack fills
# them for a single node (compose runs one).
SINGLE_NODE = {"@REPLICAS@": "1", "@MIN_ISR@": "1"}


def template_settings(path: Path) -> dict[str, str]:
    """The `key=value` lines of a Java properties file (no continuation lines in ours), filled
    in for a single node; a line that is a placeholder alone (the quorum) is a node setting."""
    text = path.read_text()
    for placeholder, value in SINGLE_NODE.items():
        text = text.replace(placeholder, value)
    lines = (line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def check_kafka_settings(env: dict[str, str]) -> None:
    for key, value in template_settings(KAFKA_TEMPLATE).items():
        if key in KAFKA_NODE_KEYS:
            continue
        var = "KAFKA_" + key.upper().replace(".", "_")
        if env.get(var) != value:
            problem("kafka", f"{var} is {env.get(var)!r}, not {value!r} as `{key}` in {KAFKA_TEMPLATE.relative_to(REPO)}")


def check_kafka(kafka: dict) -> None:
    image = str(kafka.get("image", ""))
    if not re.fullmatch(r"apache/kafka:4\.\d+\.\d+", image):
        problem("kafka", f"image {image!r} is not a pinned apache/kafka 4.x tag")
    env = env_of(kafka)
    check_kafka_settings(env)
    if "zookeeper" in " ".join(env).lower():
        problem("kafka", "ZooKeeper settings in a KRaft setup")
    own = listeners(env.get("KAFKA_LISTENERS", ""))
    advertised = listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    controller = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
    if controller not in own:
        problem("kafka", f"controller listener {controller!r} is not in KAFKA_LISTENERS")
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    if not re.fullmatch(rf"{env.get('KAFKA_NODE_ID', '?')}@kafka:{own.get(controller, ('', 0))[1]}", voters):
        problem("kafka", f"KAFKA_CONTROLLER_QUORUM_VOTERS {voters!r} does not name this node's controller")
    if advertised.get("PLAINTEXT") != ("kafka", own.get("PLAINTEXT", ("", 0))[1]):
        problem("kafka", "the PLAINTEXT listener must be advertised as kafka:<its port> for the other containers")
    # Each published port must be a listener, advertised to the host as the host port.
    for ip, host_port, container_port in published(kafka):
        names = [n for n, (_, p) in own.items() if p == container_port]
        if not names:
            problem("kafka", f"published container port {container_port} is no listener")
        elif advertised.get(names[0]) != (ip if ip != "0.0.0.0" else "localhost", host_port):
            problem("kafka", f"listener {names[0]} must be advertised as {ip}:{host_port}, where the host reaches it")
    test = healthcheck_command("kafka", kafka)
    if test and not re.search(r"kafka-(broker-api-versions|topics)\.sh", test):
        problem("kafka", "healthcheck should ask the broker (kafka-broker-api-versions.sh or kafka-topics.sh)")


def vendored_karapace() -> str | None:
    """The version of the Karapace archive in vendor/, which scripts/stack installs."""
    found = sorted(REPO.glob("vendor/karapace-*.tar.gz"))
    if len(found) != 1:
        problem("vendor", f"expected one karapace-<version>.tar.gz, found {[p.name for p in found]}")
        return None
    return found[0].name.removeprefix("karapace-").removesuffix(".tar.gz")


def check_registry(registry: dict, kafka: dict) -> None:
    where = "schema-registry"
    version = vendored_karapace()
    image = str(registry.get("image", ""))
    if version and image != f"ghcr.io/aiven-open/karapace:{version}":
        problem(where, f"image {image!r} is not ghcr.io/aiven-open/karapace:{version}, the Karapace of vendor/ that scripts/stack runs")
    argv = [*(registry.get("entrypoint") or []), *(registry.get("command") or [])]
    if argv[-2:] != ["-m", "karapace"]:
        problem(where, f"runs {argv!r}, not Karapace's registry (python3 -m karapace)")
    env = env_of(registry)
    text = REGISTRY_TEMPLATE.read_text()
    lines = (line for line in text.splitlines() if re.match(r"KARAPACE_[A-Z0-9_]+=", line))
    for key, value in (line.split("=", 1) for line in lines):
        if key not in REGISTRY_NODE_KEYS and env.get(key) != value:
            problem(where, f"{key} is {env.get(key)!r}, not {value!r} as in {REGISTRY_TEMPLATE.relative_to(REPO)}")
    if env.get("KARAPACE_HOST") != "0.0.0.0":
        problem(where, "KARAPACE_HOST must be 0.0.0.0, for the other containers and the published port")
    if env.get("KARAPACE_ADVERTISED_HOSTNAME") != where:
        problem(where, f"KARAPACE_ADVERTISED_HOSTNAME should be {where}, where the other containers reach it")
    kafka_plain = listeners(env_of(kafka).get("KAFKA_ADVERTISED_LISTENERS", "")).get("PLAINTEXT")
    if kafka_plain and env.get("KARAPACE_BOOTSTRAP_URI") != f"{kafka_plain[0]}:{kafka_plain[1]}":
        problem(where, "KARAPACE_BOOTSTRAP_URI should be Kafka's advertised PLAINTEXT listener")
    port = env.get("KARAPACE_PORT", "")
    if not port.isdigit() or ("127.0.0.1", 8081, int(port)) not in published(registry):
        problem(where, "KARAPACE_PORT not published as 127.0.0.1:8081 (the port scripts/stack gives the registry)")
    depends = registry.get("depends_on") or {}
    condition = depends.get("kafka", {}).get("condition") if isinstance(depends, dict) else None
    if condition != "service_healthy":
        problem(where, f"depends_on kafka should have condition: service_healthy, not {condition!r}")
    test = healthcheck_command(where, registry)
    if test and not (f"127.0.0.1:{port}/_health" in test and "schema_registry_ready" in test):
        problem(where, f"healthcheck should ask 127.0.0.1:{port}/_health whether schema_registry_ready")


def check_cassandra(cassandra: dict) -> None:
    image = str(cassandra.get("image", ""))
    if not re.fullmatch(r"cassandra:5\.0(\.\d+)?", image):
        problem("cassandra", f"image {image!r} is not cassandra:5.0")
    if ("127.0.0.1", 9042, 9042) not in published(cassandra):
        problem("cassandra", "CQL port not published as 127.0.0.1:9042:9042")
    test = healthcheck_command("cassandra", cassandra)
    if test and "cqlsh" not in test:
        problem("cassandra", "healthcheck should run a CQL query with cqlsh")


def check_standin(standin: dict, aqueduct: dict) -> int:
    """Returns the port the stand-in listens on."""
    if standin.get("image") != aqueduct.get("image") or "build" not in standin:
        problem("standin", "should be built from the same image as aqueduct")
    argv = [*(standin.get("entrypoint") or []), *(standin.get("command") or [])]
    if not argv or argv[0] != "randomuser-standin":
        problem("standin", f"runs {argv!r}, not randomuser-standin")
    m = re.fullmatch(r"0\.0\.0\.0:(\d+)", argv[-1] if len(argv) > 1 else "")
    if not m:
        problem("standin", "must listen on 0.0.0.0:<port> to be reachable from aqueduct")
        return 0
    port = int(m[1])
    test = healthcheck_command("standin", standin)
    if test and not (f"/dev/tcp/127.0.0.1/{port}" in test or f"127.0.0.1:{port}" in test):
        problem("standin", f"healthcheck does not probe port {port}")
    if "curl" in test or "wget" in test:
        problem("standin", "healthcheck uses curl/wget, which debian:bookworm-slim lacks")
    return port


def check_aqueduct(aqueduct: dict, kafka: dict, standin_port: int) -> None:
    if "build" not in aqueduct:
        problem("aqueduct", "has no build section (the Dockerfile)")
    depends = aqueduct.get("depends_on") or {}
    for dep in ("kafka", "cassandra", "standin"):
        condition = depends.get(dep, {}).get("condition") if isinstance(depends, dict) else None
        if condition != "service_healthy":
            problem("aqueduct", f"depends_on {dep} should have condition: service_healthy, not {condition!r}")
    env = env_of(aqueduct)
    url = urlsplit(env.get("AQUEDUCT_SOURCE__URL", ""))
    if (url.hostname, url.port) != ("standin", standin_port):
        problem("aqueduct", f"AQUEDUCT_SOURCE__URL should point at standin:{standin_port}")
    kafka_plain = listeners(env_of(kafka).get("KAFKA_ADVERTISED_LISTENERS", "")).get("PLAINTEXT")
    if kafka_plain and env.get("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS") != f"{kafka_plain[0]}:{kafka_plain[1]}":
        problem("aqueduct", "AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS should be Kafka's advertised PLAINTEXT listener")
    try:
        points = json.loads(env.get("AQUEDUCT_CASSANDRA__CONTACT_POINTS", ""))
    except json.JSONDecodeError:
        points = None
    if points != ["cassandra:9042"]:
        problem("aqueduct", "AQUEDUCT_CASSANDRA__CONTACT_POINTS should be the JSON list [\"cassandra:9042\"]")
    command = aqueduct.get("command") or []
    spec = command[-1] if command else ""
    if not (REPO / spec).is_file() or not spec.startswith("pipelines/"):
        problem("aqueduct", f"runs {spec!r}, not a spec of pipelines/ (the image has them)")


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of each `./host:/container[:ro]` bind mount."""
    out = {}
    for volume in service.get("volumes") or []:
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith("./"):
            out[parts[1]] = REPO / parts[0]
    return out


def check_monitoring(prometheus: dict, grafana: dict, aqueduct: dict) -> None:
    """Prometheus scrapes aqueduct where it serves metrics; Grafana is provisioned with that
    Prometheus and the dashboard (whose queries the metrics e2e test checks against a scrape)."""
    import yaml

    address = env_of(aqueduct).get("AQUEDUCT_METRICS__ADDRESS", "")
    port = address.rsplit(":", 1)[-1]
    if not port.isdigit() or not address.startswith("0.0.0.0:"):
        problem("aqueduct", "AQUEDUCT_METRICS__ADDRESS must be 0.0.0.0:<port>, for Prometheus to reach it")
    config = mounts(prometheus).get("/etc/prometheus/prometheus.yml")
    if config is None or not config.is_file():
        problem("prometheus", "must mount ./prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
    else:
        targets = [
            t
            for job in yaml.safe_load(config.read_text()).get("scrape_configs") or []
            for static in job.get("static_configs") or []
            for t in static.get("targets") or []
        ]
        if f"aqueduct:{port}" not in targets:
            problem("prometheus", f"{config.relative_to(REPO)} does not scrape aqueduct:{port} ({targets})")
    grafana_mounts = mounts(grafana)
    provisioning = grafana_mounts.get("/etc/grafana/provisioning")
    dashboards = grafana_mounts.get("/var/lib/grafana/dashboards")
    if provisioning is None or dashboards is None:
        problem("grafana", "must mount ./grafana/provisioning and ./grafana/dashboards")
        return
    uids = set()
    for source in (provisioning / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(source.read_text()).get("datasources") or []:
            uids.add(ds.get("uid"))
            if ds.get("url") != "http://prometheus:9090":
                problem("grafana", f"{source.relative_to(REPO)}: data source {ds.get('name')} is not http://prometheus:9090")
    boards = sorted(dashboards.glob("*.json"))
    if not boards:
        problem("grafana", f"no dashboard in {dashboards.relative_to(REPO)}")
    for board in boards:
        try:
            panels = json.loads(board.read_text()).get("panels") or []
        except json.JSONDecodeError as e:
            problem("grafana", f"{board.relative_to(REPO)} is not JSON: {e}")
            continue
        for panel in panels:
            uid = (panel.get("datasource") or {}).get("uid")
            if uid not in uids:
                problem("grafana", f"{board.relative_to(REPO)}: panel {panel.get('title')!r} uses data source {uid!r}, not a provisioned one {sorted(uids)}")


def check_image_files() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    if len(stages) != 2 or not re.fullmatch(r"rust:\S*bookworm", stages[0]) or stages[1] != "debian:bookworm-slim":
        problem("Dockerfile", f"expected a rust:*-bookworm build and a debian:bookworm-slim run stage, got {stages}")
    for package in ("cmake", "pkg-config", "libssl-dev", "libzstd-dev", "zlib1g-dev", "libcurl4-openssl-dev", "libssl3"):
        if not re.search(rf"\b{re.escape(package)}\b", dockerfile):
            problem("Dockerfile", f"does not install {package}")
    for binary in ("aqueduct", "randomuser-standin"):
        if f"target/release/{binary}" not in dockerfile:
            problem("Dockerfile", f"does not copy the {binary} binary")
    ignore = (REPO / ".dockerignore").read_text().split()
    for needed in ("!Cargo.toml", "!Cargo.lock", "!src/", "!standin/", "!pipelines/"):
        if "*" in ignore and needed not in ignore:
            problem(".dockerignore", f"keeps {needed[1:]} out of the build context")


def docker_config(path: Path) -> None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            run = subprocess.run([*cmd, "-f", str(path), "config", "--quiet"], capture_output=True, text=True)
            if run.returncode != 0:
                problem(" ".join(cmd) + " config", run.stderr.strip())
            return


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docker-compose.yml"
    try:
        import yaml
    except ImportError:
        print("check-compose: needs PyYAML (apt-get install python3-yaml, or pip install pyyaml)", file=sys.stderr)
        return 2
    try:
        compose = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        print(f"check-compose: {path}: {e}", file=sys.stderr)
        return 2
    services = compose.get("services") or {}
    if set(services) != SERVICES:
        problem(str(path), f"services are {sorted(services)}, expected {sorted(SERVICES)}")
    if SERVICES <= set(services):
        check_kafka(services["kafka"])
        check_registry(services["schema-registry"], services["kafka"])
        check_cassandra(services["cassandra"])
        port = check_standin(services["standin"], services["aqueduct"])
        check_aqueduct(services["aqueduct"], services["kafka"], port)
        check_monitoring(services["prometheus"], services["grafana"], services["aqueduct"])
    check_image_files()
    docker_config(path)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check-compose: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-compose: {path.name}, Dockerfile and .dockerignore are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
