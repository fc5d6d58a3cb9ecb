"""No Docker engine here: validate docker-compose.yml and deploy/ statically."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_kafka_kraft_topics_and_two_workers() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "worker-1", "worker-2"} <= set(services)
    kafka = services["kafka"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["environment"]["PLUGSTREAM_BROKER"] == "kafka://kafka:9092"
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    ports = {services[n]["ports"][0].split(":")[0] for n in ("worker-1", "worker-2")}
    assert ports == {"6066", "6067"}


def test_every_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image and re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
    base = re.search(r"^FROM (\S+)", (ROOT / "deploy/Dockerfile").read_text(), re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base)


def test_dockerfile_installs_the_package_and_runs_the_worker() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    for needed in (
        "COPY streams",
        "COPY schemas",
        "pip install -e",
        'ENTRYPOINT ["plugstream"]',
        'CMD ["worker"]',
        "/api/health",
        "USER plugstream",
    ):
        assert needed in text


def test_compose_env_vars_are_real_settings() -> None:
    from streams.config import Settings

    known = {f"PLUGSTREAM_{name.upper()}" for name in Settings.model_fields}
    for service in compose()["services"].values():
        for var in service.get("environment") or {}:
            if var.startswith("PLUGSTREAM_"):
                assert var in known, var


def k8s_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/plugstream.yaml").read_text()) if d]


def test_k8s_manifests_are_complete_and_consistent() -> None:
    from streams.config import Settings

    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_documents()}
    assert {
        ("ConfigMap", "plugstream-config"),
        ("Secret", "plugstream-secrets"),
        ("Job", "plugstream-topics"),
        ("Service", "plugstream-headless"),
        ("Service", "plugstream"),
        ("StatefulSet", "plugstream"),
    } <= set(docs)
    sts = docs[("StatefulSet", "plugstream")]
    headless = docs[("Service", "plugstream-headless")]
    assert headless["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == "plugstream-headless"
    pod = sts["spec"]["template"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["worker"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health"
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"plugstream-config", "plugstream-secrets"}
    known = {f"PLUGSTREAM_{name.upper()}" for name in Settings.model_fields}
    config, secret = docs[("ConfigMap", "plugstream-config")], docs[("Secret", "plugstream-secrets")]
    assert set(config["data"]) <= known and set(secret["stringData"]) <= known
    assert not {"PLUGSTREAM_SASL_PASSWORD", "PLUGSTREAM_API_TOKEN"} & set(config["data"])  # secrets only in Secret
    Settings(**{k.removeprefix("PLUGSTREAM_").lower(): v for k, v in config["data"].items()})  # values validate
    # RocksDB state lives on each pod's own persistent volume, mounted where the store points
    store = config["data"]["PLUGSTREAM_STORE"]
    assert store.startswith("rocksdb://")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert any(name in claims and store.removeprefix("rocksdb://") == path for name, path in mounts.items())
    assert int(config["data"]["PLUGSTREAM_STANDBY_REPLICAS"]) >= 1
    job = docs[("Job", "plugstream-topics")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["topics", "create"]
    for image in (container["image"], job["image"]):
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest")
