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
