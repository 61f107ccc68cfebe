"""Every example is exercised: the GitOps directory is rendered and compared with what is
committed, and everything the renderer produces for examples/ passes Istio's own validation
(a real istio.io/istio build) and authd's own config check."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest

from e2e.harness.kube import e2e_tools
from e2e.harness.proc import AUTHD, CONTROLLER, REPO, skip_e2e

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

EXAMPLES = REPO / "examples"


def render(out: Path, *sources: Path, extra: tuple = ()) -> None:
    args = [str(CONTROLLER), "render", *[a for s in sources for a in ("-f", str(s))], "-o", str(out),
            *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_gitops_rendered_dir_is_up_to_date(tmp_path):
    render(tmp_path, EXAMPLES / "gitops" / "protected-hosts")
    committed = EXAMPLES / "gitops" / "rendered"
    cmp = filecmp.dircmp(committed, tmp_path)
    assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(committed, tmp_path, cmp.common_files, shallow=False)
    assert not mismatch and not errors, f"re-render examples/gitops: {mismatch}"


def test_every_example_passes_istio_validation(tmp_path):
    render(tmp_path, *sorted(EXAMPLES.glob("*.yaml")))
    tool = e2e_tools()["PORTCULLIS_ISTIO_VALIDATE"]
    policies = sorted(str(p) for p in tmp_path.glob("authorizationpolicy-*.yaml"))
    assert len(policies) >= 5
    for args in (["policy", *policies], ["mesh", str(tmp_path / "mesh-config.yaml")]):
        r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_rendered_authd_config_passes_check_config(tmp_path):
    secret_files = []
    for ph in ("test-auth/echo-oidc", "monitoring/grafana-oidc", "monitoring/apps-oidc",
               "backoffice/apps-oidc", "shop/orders-api-oidc"):
        path = tmp_path / ph.replace("/", "_")
        path.write_text("client-secret-value\n")
        secret_files += ["--secret-file", f"{ph}/client-secret={path}"]
    out = tmp_path / "out"
    render(out, *sorted(EXAMPLES.glob("*.yaml")), extra=tuple(secret_files))
    import yaml
    hosts = []
    for shard in yaml.safe_load_all((out / "authd-config-secrets.yaml").read_text()):
        hosts += yaml.safe_load(shard["stringData"]["hosts.yaml"])["hosts"]
    assert len(hosts) == 5
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"hosts": hosts}))
    cookie = tmp_path / "cookie"
    cookie.write_text(os.urandom(24).hex())
    r = subprocess.run([str(AUTHD), "--config", str(config), "--check-config",
                        f"--cookie-secret-file={cookie}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config ok" in r.stdout
