"""deploy/: the recipes parse, agree with each other, and the systemd unit passes systemd-analyze."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.config import parse_settings
from tests.helpers import REPO

DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_shipped_config_is_valid_and_the_configmap_carries_it() -> None:
    text = (DEPLOY / "monitor.toml").read_text()
    settings = parse_settings(text, env={})
    assert settings.server.port == 8080
    configmap = _docs(DEPLOY / "k8s" / "configmap.yaml")[0]
    data = configmap["data"]
    assert isinstance(data, dict)
    assert data["monitor.toml"].strip() == text.strip()


def test_kubernetes_manifests() -> None:
    kustomization = _docs(DEPLOY / "k8s" / "kustomization.yaml")[0]
    resources = kustomization["resources"]
    assert isinstance(resources, list)
    kinds = {}
    for name in resources:
        for doc in _docs(DEPLOY / "k8s" / name):
            kinds[doc["kind"]] = doc
    assert {"Deployment", "PersistentVolumeClaim", "Secret", "ConfigMap", "Service"} <= set(kinds)
    deployment = kinds["Deployment"]
    spec = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"].startswith("/healthz")
    assert container["readinessProbe"]["httpGet"]["path"].startswith("/healthz")
    assert container["envFrom"][0]["secretRef"]["name"] == kinds["Secret"]["metadata"]["name"]  # type: ignore[index]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == [kinds["PersistentVolumeClaim"]["metadata"]["name"]]  # type: ignore[index]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # type: ignore[index]


def test_compose_file() -> None:
    compose = _docs(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert isinstance(services, dict)
    assert services["monitor"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "/data" in " ".join(services["monitor"]["volumes"])
    assert services["postgres"]["profiles"] == ["postgres"]


def test_dockerfile_is_non_root_with_healthcheck_and_volume() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("root", "0"))
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'VOLUME ["/data"]' in text
    for copied in ("pyproject.toml", "monitor", "deploy/monitor.toml"):
        assert f"COPY {copied}" in text or f" {copied} " in text or copied in text


def test_secrets_files_stay_out_of_git_and_of_the_image_context() -> None:
    """README has the secrets written into .env (docker run --env-file .env; compose reads
    deploy/.env): git must not offer to commit it, nor docker send it (or .venv, the store) to the
    builder, while what the Dockerfile copies stays in the context."""
    if (REPO / ".git").exists() and shutil.which("git"):
        ignored = subprocess.run(["git", "check-ignore", ".env", "deploy/.env"], cwd=REPO,
                                 capture_output=True, text=True, timeout=30)
        assert ignored.stdout.split() == [".env", "deploy/.env"], ignored
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def excluded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
                   or path.startswith(p + "/") for p in patterns)

    for path in (".env", "deploy/.env", ".venv", "var", "var/paper-monitor.db"):
        assert excluded(path), path
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    sources = [s for line in copied for s in line.split()]
    assert {"pyproject.toml", "README.md", "monitor", "deploy/monitor.toml"} <= set(sources)
    for path in sources:
        assert not excluded(path), path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "paper-monitor.service").read_text()
    for key in ("DynamicUser=yes", "StateDirectory=", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "UMask=0077", "EnvironmentFile=", "time-sync.target"):
        assert key in unit
    # verify checks that ExecStart exists: point it at this checkout's entry point.
    local = tmp_path / "paper-monitor.service"
    entry = str(REPO / ".venv/bin/paper-monitor")
    local.write_text(unit.replace("/opt/paper-monitor/venv/bin/paper-monitor", entry))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "paper-monitor.service" not in result.stderr, result.stderr  # no warnings about our unit
