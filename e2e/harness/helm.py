"""The Helm chart (charts/portcullis) and the helm CLI for the chart tests.

helm and monitoring-check are built from their Go modules (e2e/helm, e2e/monitoring-check) by
scripts/build-e2e-tools.sh into the cache, keyed by version; PORTCULLIS_HELM and
PORTCULLIS_MONITORING_CHECK override them. helm keeps its own state (repositories, cache) in a
work dir, never in the user's ~/.config.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import yaml

from .proc import REPO, work_dir

CHART = REPO / "charts" / "portcullis"
BUILD_SCRIPT = REPO / "scripts" / "build-e2e-tools.sh"
KEYS = ("PORTCULLIS_HELM", "PORTCULLIS_MONITORING_CHECK")


@functools.cache
def tools() -> dict[str, str]:
    """Paths of helm and monitoring-check, building them first when missing."""
    found = {k: os.environ[k] for k in KEYS if os.environ.get(k)}
    if len(found) == len(KEYS):
        return found
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-env"], stdout=subprocess.PIPE,
                          stderr=None, text=True, check=True, timeout=3600)
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in KEYS:
            found.setdefault(key, value)
    return found


@functools.cache
def _home() -> Path:
    return work_dir("helm-home")


def helm(*args: str, kubeconfig: str | None = None, check: bool = True,
         timeout: float = 180) -> subprocess.CompletedProcess:
    """Runs helm; raises with helm's stderr when check is true and it fails."""
    home = _home()
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    cmd = [tools()["PORTCULLIS_HELM"], *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc


def split_sources(text: str) -> list[tuple[str, dict]]:
    """`helm template` output as (template file, object) pairs, empty documents left out."""
    out = []
    for part in text.split("\n---"):
        source = ""
        for line in part.splitlines():
            if line.startswith("# Source: "):
                source = line[len("# Source: "):].strip()
                break
        doc = yaml.safe_load(part)
        if doc:
            out.append((source, doc))
    return out


def template(*args: str, namespace: str = "portcullis-system") -> list[tuple[str, dict]]:
    """`helm template portcullis charts/portcullis --include-crds -n NAMESPACE ARGS...`."""
    text = helm("template", "portcullis", str(CHART), "--include-crds", "-n", namespace,
                *args).stdout
    return split_sources(text)
