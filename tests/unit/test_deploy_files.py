"""The deployment files agree with the code: commands parse, probes hit real public routes, config validates.
(Docker does not run on these machines; this is what can be checked without it.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from gatewayz.cli import build_parser
from gatewayz.settings import ENV_OVERRIDES, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _k8s() -> dict[str, dict[str, object]]:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "gatewayz.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_kubernetes_manifests(tmp_path: Path) -> None:
    kinds = _k8s()
    assert set(kinds) == {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                          "PodDisruptionBudget"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    container = pod["containers"][0]
    args = build_parser().parse_args(container["command"][1:])
    assert args.command == "serve" and args.config == "/etc/gatewayz/gatewayz.yaml"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/quick"
    assert pod["terminationGracePeriodSeconds"] > 30  # longer than the server's own drain
    config = tmp_path / "gatewayz.yaml"
    config.write_text(kinds["ConfigMap"]["data"]["gatewayz.yaml"])  # type: ignore[index]
    load_settings(config, env={})  # validates
    secret_keys = set(kinds["Secret"]["stringData"])  # type: ignore[arg-type]
    assert {"GATEWAYZ_DATABASE_URL", "GATEWAYZ_REDIS_URL", "GATEWAYZ_ADMIN_KEY",
            "GATEWAYZ_ENCRYPTION_KEY"} <= secret_keys
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] < kinds["Deployment"]["spec"]["replicas"]  # type: ignore[index,operator]


def test_compose_and_dockerfile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["gateway"]["environment"]
    assert {k for k in env if k.startswith("GATEWAYZ_")} <= set(ENV_OVERRIDES)
    assert env["GATEWAYZ_DATABASE_URL"].startswith("postgresql+asyncpg://")
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    args = build_parser().parse_args(yaml.safe_load(cmd[4:])[1:])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert "USER gatewayz" in dockerfile and "/health/quick" in dockerfile
