"""deploy/ checked with the real tools that install here (no container engine runs here).

* every YAML file parses and passes ``yamllint`` (the repo's .yamllint);
* each compose file passes ``docker-compose config`` (Debian's docker-compose, a real compose
  implementation), and the files it bind-mounts exist;
* the Kubernetes manifests pass ``kubernetes-validate --strict`` (the API schemas of the
  Kubernetes version it ships), and the kustomization names files that exist;
* the collector configs only wire components they define; the Grafana dashboard names the
  provisioned datasources;
* the agent → gateway → backend path runs for real, with two ``rotel`` collectors standing in
  for the agent and the gateway: callspan → rotel → rotel → recording receiver.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import SCRIPTS_DIR, describe, marker_line, run_python_script
from rotel import RotelAgent

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILES = sorted(DEPLOY.glob("*/compose.yaml"))
K8S_MANIFESTS = sorted((DEPLOY / "collector" / "k8s").glob("*.yaml"))


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def test_every_yaml_file_parses_and_passes_yamllint():
    files = yaml_files()
    assert len(files) >= 12, files
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path
    completed = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint"), *files],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda path: path.parent.name)
def test_compose_file_passes_docker_compose_config(compose_file):
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed: `apt-get install docker-compose` (make does)")
    completed = subprocess.run(
        [docker_compose, "-f", str(compose_file), "config"],
        capture_output=True,
        text=True,
        cwd=compose_file.parent,
    )
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)
    assert resolved["services"], completed.stdout
    for name, service in resolved["services"].items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and source.startswith("/"):
                assert Path(source).exists(), f"{compose_file}: {name} mounts missing {source}"


def test_compose_files_publish_the_otlp_and_ui_ports():
    jaeger = yaml.safe_load((DEPLOY / "jaeger" / "compose.yaml").read_text())
    assert set(jaeger["services"]["jaeger"]["ports"]) == {"4317:4317", "4318:4318", "16686:16686"}
    tempo = yaml.safe_load((DEPLOY / "tempo" / "compose.yaml").read_text())
    assert {"4317:4317", "4318:4318"} <= set(tempo["services"]["tempo"]["ports"])
    assert "--web.enable-otlp-receiver" in tempo["services"]["prometheus"]["command"]


def test_kubernetes_manifests_pass_kubernetes_validate():
    assert {path.name for path in K8S_MANIFESTS} == {"agent.yaml", "gateway.yaml", "namespace.yaml"}
    completed = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, K8S_MANIFESTS)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("passed") == 4, completed.stdout
    kinds = {
        (doc["kind"], doc["metadata"]["name"])
        for path in K8S_MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert ("DaemonSet", "callspan-agent") in kinds
    assert ("Deployment", "callspan-gateway") in kinds
    (service,) = [
        doc
        for doc in yaml.safe_load_all((DEPLOY / "collector" / "k8s" / "gateway.yaml").read_text())
        if doc["kind"] == "Service"
    ]
    assert service["spec"]["clusterIP"] == "None"  # headless: the agents see every gateway pod
    agent = yaml.safe_load((DEPLOY / "collector" / "agent.yaml").read_text())
    env = {
        e["name"]: e["value"]
        for doc in yaml.safe_load_all((DEPLOY / "collector" / "k8s" / "agent.yaml").read_text())
        for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "${env:CALLSPAN_GATEWAY_HOSTNAME}" in str(agent["exporters"]["loadbalancing"])
    assert env["CALLSPAN_GATEWAY_HOSTNAME"].startswith(service["metadata"]["name"] + ".")


def test_kustomization_names_files_that_exist():
    directory = DEPLOY / "collector"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (directory / resource).is_file(), resource
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            assert (directory / entry.split("=")[-1]).is_file(), entry


@pytest.mark.parametrize(
    "config", ["collector/agent.yaml", "collector/gateway.yaml", "jaeger/config.yaml"]
)
def test_collector_config_wires_only_defined_components(config):
    document = yaml.safe_load((DEPLOY / config).read_text())
    service = document["service"]
    for extension in service.get("extensions", []):
        assert extension in document["extensions"], extension
    for name, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (document.get(kind) or {}), f"{name}: {kind} {component}"
    receiver = document["receivers"]["otlp"]["protocols"]["grpc"]
    assert receiver["max_recv_msg_size_mib"] == 16


def test_gateway_tail_sampling_keeps_errors_slow_calls_and_a_share_of_callers():
    gateway = yaml.safe_load((DEPLOY / "collector" / "gateway.yaml").read_text())
    policies = {p["type"]: p for p in gateway["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] > 0
    assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] > 0
    sub = {p["type"]: p for p in policies["and"]["and"]["and_sub_policy"]}
    assert sub["string_attribute"]["string_attribute"]["key"] == "caller.function.name"
    assert sub["rate_limiting"]["rate_limiting"]["spans_per_second"] > 0


def test_dashboard_uses_the_provisioned_datasources():
    tempo = DEPLOY / "tempo" / "grafana"
    provisioned = yaml.safe_load((tempo / "provisioning/datasources/datasources.yaml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboard = json.loads((tempo / "dashboards" / "callspan-callers.json").read_text())
    assert dashboard["title"] == "callspan: calls and time by caller"
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used.add(target["datasource"]["uid"])
    assert used == uids == {"tempo", "prometheus"}
    exemplar_panels = [
        panel
        for panel in dashboard["panels"]
        if any(t.get("exemplar") for t in panel.get("targets", []))
    ]
    assert exemplar_panels, "panels show exemplars that link to traces"
    (prometheus,) = [s for s in provisioned["datasources"] if s["uid"] == "prometheus"]
    assert {d["datasourceUid"] for d in prometheus["jsonData"]["exemplarTraceIdDestinations"]} == {
        "tempo"
    }


def test_agent_and_gateway_hops_deliver_spans_intact(receiver, run_script):
    """callspan → rotel (agent) → rotel (gateway) → receiver: every span, every attribute."""
    with RotelAgent(exporter="otlp", exporter_endpoint=receiver.endpoint) as gateway:
        with RotelAgent(exporter="otlp", exporter_endpoint=gateway.grpc_endpoint) as agent:
            run_script(
                "view_callers.py",
                env={
                    "OTEL_EXPORTER_OTLP_ENDPOINT": agent.grpc_endpoint,
                    "OTEL_SERVICE_NAME": "fleet",
                },
            )
            spans = receiver.wait_for_spans(100, timeout=30)
    assert len(spans) == 100, describe(spans)
    script = SCRIPTS_DIR / "view_callers.py"
    crop = [s for s in spans if s.attributes.get("caller.function.name") == "__main__.Cropper.crop"]
    assert len(crop) == 20
    for span in crop:
        assert span.name == "checksum"
        assert span.attributes["code.function.name"] == "__main__.checksum"
        assert span.attributes["caller.file.path"] == str(script)
        assert span.attributes["caller.line.number"] == marker_line(script, "crop")
        assert span.attributes["caller.class.name"] == "__main__.Cropper"
        assert span.attributes["thread.name"] == "MainThread"
        assert span.resource_attributes["service.name"] == "fleet"
        assert span.scope_name == "callspan"
    errors = [s for s in crop if s.status_code == "STATUS_CODE_ERROR"]
    assert len(errors) == 5
    assert all(s.event("exception").attributes["exception.type"] == "ValueError" for s in errors)
    by_id = {span.span_id: span for span in spans}
    loads = [s for s in spans if s.attributes.get("caller.function.name") == "__main__.load"]
    assert len(loads) == 5
    for span in loads:  # parent links survive both hops
        parent = by_id[span.parent_span_id]
        assert parent.name == "load" and parent.trace_id == span.trace_id


def test_send_file_replays_a_file_exporter_file_over_otlp_http(receiver, tmp_path):
    """deploy/send-file.sh: the way to load a file-exporter file into any OTLP/HTTP backend."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: apt-get install curl")
    spans_file = tmp_path / "spans.jsonl"
    run_python_script(
        SCRIPTS_DIR / "view_callers.py",
        "http://127.0.0.1:9",
        env={"CALLSPAN_EXPORTER": "file", "CALLSPAN_FILE": str(spans_file)},
        workdir=tmp_path,
    )
    with RotelAgent(exporter="otlp", exporter_endpoint=receiver.endpoint) as collector:
        completed = subprocess.run(
            [str(DEPLOY / "send-file.sh"), str(spans_file), f"{collector.http_endpoint}/v1/traces"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        assert f"from {spans_file}" in completed.stdout
        spans = receiver.wait_for_spans(100, timeout=30)
    assert len(spans) == 100
    assert {s.attributes["caller.function.name"] for s in spans} >= {
        "__main__.Resizer.resize",
        "__main__.Cropper.crop",
    }
