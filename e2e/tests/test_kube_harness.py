"""Smoke test of the Kubernetes and Istio peers (DESIGN.md §6).

A real etcd + kube-apiserver with the Istio CRDs accepts the objects the
controller renders (§4), and Istio's own validation accepts the rendered
AuthorizationPolicy and mesh extension provider and rejects broken ones.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.kube import api_server, istio_validate  # noqa: E402,F401  (fixtures)
from e2e.harness.proc import skip_e2e  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
"""

# What the controller renders for one ProtectedHost (§4.1).
POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: portcullis-apps-echo
  namespace: istio-system
  labels:
    app.kubernetes.io/managed-by: portcullis
spec:
  action: CUSTOM
  provider:
    name: portcullis
  selector:
    matchLabels:
      istio: ingressgateway
  rules:
  - to:
    - operation:
        hosts: ["echo.example.com", "echo.example.com:*"]
        notPaths: ["/healthz", "/static/*"]
"""

# The extension provider the controller merges into the mesh config (§4.2).
MESH = """\
extensionProviders:
- name: portcullis
  envoyExtAuthzHttp:
    service: portcullis-authd.portcullis-system.svc.cluster.local
    port: 4180
    pathPrefix: /ext-authz
    timeout: 2s
    failOpen: false
    statusOnError: "503"
    includeRequestHeadersInCheck: [cookie, authorization, accept, x-requested-with,
      sec-fetch-mode, x-forwarded-proto, x-forwarded-host, user-agent]
    headersToUpstreamOnAllow: [x-auth-request-user, x-auth-request-email, authorization, cookie]
    headersToDownstreamOnDeny: [content-type, set-cookie, location, www-authenticate, cache-control]
    headersToDownstreamOnAllow: [set-cookie]
"""


def run_validate(binary, tmp_path, mode, text):
    path = tmp_path / f"{mode}.yaml"
    path.write_text(text)
    return subprocess.run([binary, mode, str(path)], capture_output=True, text=True, timeout=60)


def test_apiserver_answers_with_admin_token(api_server):
    status, body = api_server.get("/readyz")
    assert status == 200, body
    status, _ = api_server.get("/api/v1/namespaces", token="wrong")
    assert status == 401
    out = api_server.kubectl("get", "--raw", "/version").stdout
    assert json.loads(out)["gitVersion"].startswith("v1.")


def test_policy_round_trips_through_istio_crds(api_server):
    api_server.install_istio_crds()
    api_server.kubectl("apply", "-f", "-", input=NAMESPACE + "---\n" + POLICY)
    out = api_server.kubectl(
        "get", "authorizationpolicies.security.istio.io", "-n", "istio-system",
        "portcullis-apps-echo", "-o", "json",
    ).stdout
    spec = json.loads(out)["spec"]
    assert spec["action"] == "CUSTOM"
    assert spec["provider"] == {"name": "portcullis"}
    assert spec["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    operation = spec["rules"][0]["to"][0]["operation"]
    assert operation["hosts"] == ["echo.example.com", "echo.example.com:*"]
    assert operation["notPaths"] == ["/healthz", "/static/*"]


def test_controller_token_is_subject_to_rbac(api_server):
    def can_list():
        return api_server.kubectl(
            "auth", "can-i", "list", "authorizationpolicies.security.istio.io", "-A",
            kubeconfig=api_server.controller_kubeconfig, check=False,
        ).stdout.strip()

    assert can_list() == "no"
    api_server.kubectl(
        "create", "clusterrolebinding", "portcullis-controller-view",
        "--clusterrole=cluster-admin", "--user=portcullis-controller",
    )
    assert can_list() == "yes"


def test_restart_keeps_port_and_data(api_server):
    api_server.kubectl("create", "configmap", "before-restart", "-n", "default")
    url = api_server.url
    api_server.restart()
    assert api_server.url == url
    api_server.kubectl("get", "configmap", "before-restart", "-n", "default")


def test_istio_validate_accepts_rendered_policy(istio_validate, tmp_path):
    proc = run_validate(istio_validate, tmp_path, "policy", POLICY)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "broken, message",
    [
        (POLICY.replace("  provider:\n    name: portcullis\n", ""), "provider"),
        (POLICY.replace("notPaths", "notPathz"), "notPathz"),
        (POLICY.replace("action: CUSTOM", "action: CUSTOMISED"), "CUSTOMISED"),
        (POLICY.replace("kind: AuthorizationPolicy", "kind: AuthorisationPolicy"), "unknown kind"),
    ],
    ids=["no-provider", "unknown-field", "bad-action", "unknown-kind"],
)
def test_istio_validate_rejects_broken_policy(istio_validate, tmp_path, broken, message):
    proc = run_validate(istio_validate, tmp_path, "policy", broken)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_istio_validate_accepts_rendered_mesh_config(istio_validate, tmp_path):
    proc = run_validate(istio_validate, tmp_path, "mesh", MESH)
    assert proc.returncode == 0, proc.stderr


def test_istio_validate_reads_mesh_from_configmap(istio_validate, tmp_path):
    mesh = "\n".join("    " + line for line in MESH.splitlines())
    configmap = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n"
        f"  namespace: istio-system\ndata:\n  mesh: |-\n{mesh}\n"
    )
    proc = run_validate(istio_validate, tmp_path, "mesh", configmap)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "broken, message",
    [
        (MESH.replace("    timeout: 2s\n", "    timout: 2s\n"), "timout"),
        (MESH.replace("    port: 4180\n", ""), "port"),
        (MESH.replace('statusOnError: "503"', 'statusOnError: "five"'), "five"),
        (MESH.replace("pathPrefix: /ext-authz", "pathPrefix: ext-authz"), "pathPrefix"),
        (MESH + MESH.replace("extensionProviders:\n", ""), "duplicate"),
    ],
    ids=["unknown-field", "missing-port", "bad-status", "relative-prefix", "duplicate-name"],
)
def test_istio_validate_rejects_broken_mesh_config(istio_validate, tmp_path, broken, message):
    proc = run_validate(istio_validate, tmp_path, "mesh", broken)
    assert proc.returncode != 0
    assert message in proc.stderr
