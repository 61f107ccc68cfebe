"""deploy/ (the kustomize base) and `portcullis-controller bootstrap` (issue 4, item 2).

Without peers: the CRD copy in deploy/ is identical to crds/, every file is a kustomize
resource, `kubectl kustomize deploy/` builds hardened Deployments, and bootstrap prints the same
objects as kustomize plus a cookie Secret.

Against a real kube-apiserver (e2e/harness/kube.py): `kubectl apply -k deploy/` and
`bootstrap | kubectl apply -f -` really apply (no kube-controller-manager, so the Deployments
get no Pods), and the service accounts have exactly the rights deploy/ claims: checked with
`kubectl auth can-i --as=system:serviceaccount:...` and with the controller's own writes
(server-side apply) under impersonation.
"""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.proc import CONTROLLER, REPO, built, skip_e2e  # noqa: E402

DEPLOY = REPO / "deploy"
NS = "portcullis-system"
CONTROLLER_SA = f"system:serviceaccount:{NS}:portcullis-controller"
AUTHD_SA = f"system:serviceaccount:{NS}:portcullis-authd"
KINDS = {
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
    "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

# The images deploy/ names carry the project version (CMakeLists.txt), like `make images` tags.
VERSION = re.search(r"project\(portcullis VERSION ([0-9.]+)",
                    (REPO / "CMakeLists.txt").read_text()).group(1)

needs_apiserver = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")


def controller_bin() -> str:
    return built(CONTROLLER, "PORTCULLIS_CONTROLLER")


def bootstrap(*args: str) -> str:
    proc = subprocess.run(
        [controller_bin(), "bootstrap", *args], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return docs_of(out.stdout)


def find(docs, kind, name):
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def canonical(docs) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


# ---- no peers ---------------------------------------------------------------------------------


def test_crd_copy_matches_crds():
    proc = subprocess.run(
        [str(REPO / "scripts" / "sync-deploy.sh"), "--check"], capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("protectedhost", "protectedhostpolicy"):
        assert (DEPLOY / f"crd-{name}.yaml").read_bytes() == (
            REPO / "crds" / f"{name}.yaml"
        ).read_bytes()


def test_kustomization_lists_every_manifest():
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(k["resources"]) == sorted(files)
    assert k["resources"][0] == "namespace.yaml"
    # No Secret is ever committed: the cookie secret is generated (bootstrap) or made by hand.
    assert all(d["kind"] != "Secret" for d in kustomize())


def test_kustomize_builds_every_kind():
    docs = kustomize()
    assert {d["kind"] for d in docs} == KINDS
    for d in docs:
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"]["namespace"] in (NS, "istio-system"), d["metadata"]


@pytest.mark.parametrize("name", ["portcullis-controller", "portcullis-authd"])
def test_deployments_are_hardened(name):
    dep = find(kustomize(), "Deployment", name)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert dep["spec"]["replicas"] == 2
    assert c["image"] == f"{name}:{VERSION}"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["serviceAccountName"] == name


def test_controller_deployment():
    c = find(kustomize(), "Deployment", "portcullis-controller")["spec"]["template"]["spec"][
        "containers"][0]
    assert "--leader-elect" in c["args"]
    assert "--mesh-config=istio" in c["args"]
    assert "--gateway-namespaces=istio-system" in c["args"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9091}]
    assert c["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}}
    assert {e["name"] for e in c["env"]} == {"POD_NAME", "PORTCULLIS_AUTHD_NAMESPACE"}


def test_authd_deployment_service_and_pdb():
    docs = kustomize()
    spec = find(docs, "Deployment", "portcullis-authd")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    # API mode: the config Secrets come through the API with the pod's own token.
    assert spec["automountServiceAccountToken"] is True
    assert "automountServiceAccountToken" not in find(docs, "ServiceAccount", "portcullis-authd")
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 4180, "admin": 9090}
    assert c["readinessProbe"]["httpGet"]["port"] == "admin"
    assert c["args"] == ["--watch-config", "--cookie-secret-file=/etc/portcullis/cookie/secret"]
    assert c["env"] == [{"name": "POD_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert c["volumeMounts"] == [{"name": "cookie-secret", "mountPath": "/etc/portcullis/cookie",
                                  "readOnly": True}]
    assert spec["volumes"] == [{"name": "cookie-secret", "secret": {
        "secretName": "portcullis-cookie-secret", "defaultMode": 0o440,
        "items": [{"key": "secret", "path": "secret"}]}}]
    svc = find(docs, "Service", "portcullis-authd")["spec"]
    assert svc["ports"] == [{"name": "http", "port": 4180, "targetPort": "http",
                             "appProtocol": "http"}]
    dep_selector = find(docs, "Deployment", "portcullis-authd")["spec"]["selector"]
    assert svc["selector"] == dep_selector["matchLabels"]
    assert find(docs, "PodDisruptionBudget", "portcullis-authd")["spec"]["minAvailable"] == 1


def test_sidecar_component_adds_a_hardened_authd_and_names_its_secrets():
    """deploy/components/sidecar as examples/sidecar uses it: the authd container on the pod's
    loopback, reading one shard by name; the controller may write only its two objects."""
    docs = [d for d in yaml.safe_load_all(subprocess.run(
        ["kubectl", "kustomize", str(REPO / "examples" / "sidecar")], check=True,
        capture_output=True, text=True, timeout=60).stdout) if d]
    assert {d["metadata"].get("namespace") for d in docs} == {"team-a"}
    pod = find(docs, "Deployment", "echo")["spec"]["template"]
    authd = next(c for c in pod["spec"]["containers"] if c["name"] == "portcullis-authd")
    assert "--listen=127.0.0.1:4180" in authd["args"]
    assert "--config-secret=portcullis-authd-config-00" in authd["args"]
    assert authd["securityContext"]["readOnlyRootFilesystem"] is True
    assert authd["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] == "9090"
    reader = find(docs, "Role", "portcullis-authd-sidecar")["rules"][0]
    assert reader["resourceNames"] == ["portcullis-authd-config-00", "portcullis-revocations"]
    assert find(docs, "RoleBinding", "portcullis-authd-sidecar")["subjects"] == [
        {"kind": "ServiceAccount", "name": "echo", "namespace": "team-a"}]
    writer = find(docs, "Role", "portcullis-controller-sidecar")["rules"]
    assert [r.get("resourceNames") for r in writer] == [
        None, ["portcullis-authd-config-00", "portcullis-revocations"], None,
        ["portcullis-authd-local"], None]
    # Secrets and ServiceEntries: create by kind, the rest only by name; the namespace's
    # CUSTOM policies (sidecar ProtectedHosts) by kind.
    assert all(r["verbs"] == ["create"] for r in writer[:4] if "resourceNames" not in r)
    assert writer[4]["resources"] == ["authorizationpolicies"]
    assert find(docs, "RoleBinding", "portcullis-controller-sidecar")["subjects"] == [
        {"kind": "ServiceAccount", "name": "portcullis-controller", "namespace": NS}]


def test_authd_role_is_namespaced():
    docs = kustomize()
    role = find(docs, "Role", "portcullis-authd")
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update", "patch", "delete"]},
    ]
    binding = find(docs, "RoleBinding", "portcullis-authd")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "portcullis-authd"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "portcullis-authd",
                                    "namespace": NS}]
    # Nothing cluster-wide for authd.
    for d in docs:
        if d["kind"] == "ClusterRoleBinding":
            assert all(s["name"] != "portcullis-authd" for s in d["subjects"]), d


def test_bootstrap_prints_what_kustomize_builds():
    docs = docs_of(bootstrap())
    secret = find(docs, "Secret", "portcullis-cookie-secret")
    rest = [d for d in docs if d is not secret]
    assert canonical(rest) == canonical(kustomize())


def test_redis_component_and_bootstrap_redis_agree(tmp_path):
    """deploy/redis (a kustomize Component) and bootstrap --redis-* give authd the same Redis:
    the flags, and the password as a file from the Redis chart's Secret, never inline."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = os.path.relpath(DEPLOY, overlay)
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{rel}]\ncomponents: [{rel}/redis]\n")
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    built = docs_of(out.stdout)
    url = "redis://portcullis-redis-master.portcullis-system.svc.cluster.local:6379"
    docs = docs_of(bootstrap("--redis-url", url, "--redis-secret", "portcullis-redis/redis-password"))
    docs = [d for d in docs if d["kind"] != "Secret" or d["metadata"]["name"] != "portcullis-cookie-secret"]
    assert canonical(docs) == canonical(built)
    pod = find(built, "Deployment", "portcullis-authd")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert f"--redis-url={url}" in args
    assert "--redis-password-file=/etc/portcullis/redis/password" in args
    vol = [v for v in pod["volumes"] if v["name"] == "redis-password"][0]
    assert vol["secret"] == {"secretName": "portcullis-redis", "defaultMode": 0o440,
                             "items": [{"key": "redis-password", "path": "password"}]}
    assert "password" not in " ".join(a for a in args if not a.startswith("--redis-password-file"))


def test_bootstrap_cookie_secret_is_fresh():
    s1 = find(docs_of(bootstrap()), "Secret", "portcullis-cookie-secret")["stringData"]["secret"]
    s2 = find(docs_of(bootstrap()), "Secret", "portcullis-cookie-secret")["stringData"]["secret"]
    assert len(s1) == 43 and len(base64.urlsafe_b64decode(s1 + "=")) == 32
    assert s1 != s2


@pytest.mark.parametrize(
    "mode, mesh_role, shared_cm",
    [("istio", True, False), ("shared", True, True), ("none", False, False)],
)
def test_bootstrap_mesh_modes(mode, mesh_role, shared_cm):
    proc = subprocess.run([controller_bin(), "bootstrap", f"--mesh-config={mode}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    docs = docs_of(proc.stdout)
    args = find(docs, "Deployment", "portcullis-controller")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert f"--mesh-config={mode}" in args
    assert [a for a in args if a.startswith("--mesh-config")] == [f"--mesh-config={mode}"]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "istio-system"
             and d["metadata"]["name"] == "portcullis-controller-mesh"]
    assert bool(roles) == mesh_role
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    assert bool(cms) == shared_cm
    assert ("SHARED_MESH_CONFIG=portcullis-mesh" in proc.stderr) == shared_cm


def test_bootstrap_gateway_namespaces():
    """--gateway-namespaces: the controller's flag, a Role per namespace, admission's list."""
    docs = docs_of(bootstrap("--gateway-namespaces=istio-system,gateways"))
    args = find(docs, "Deployment", "portcullis-controller")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--gateway-namespaces=istio-system,gateways" in args
    roles = {d["metadata"]["namespace"] for d in docs
             if d["kind"] in ("Role", "RoleBinding")
             and d["metadata"]["name"] == "portcullis-controller-gateway"}
    assert roles == {"istio-system", "gateways"}
    for name in ("portcullis-gateway-namespaces", "portcullis-protectedhost-policy"):
        vap = find(docs, "ValidatingAdmissionPolicy", name)
        assert {"name": "allowed", "expression": "['istio-system', 'gateways']"} in \
            vap["spec"]["variables"]


@pytest.mark.parametrize("args", [["--mesh-config=istiod"], ["--namespace", "Bad"], ["extra"],
                                  ["--gateway-namespaces=Bad"], ["--gateway-namespaces=a,"]])
def test_bootstrap_refuses_bad_arguments(args):
    proc = subprocess.run([controller_bin(), "bootstrap", *args], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""


# ---- against the real apiserver ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(api_server):
    """The apiserver with Istio's CRDs and namespace, as on a cluster with Istio installed."""
    api_server.install_istio_crds()
    api_server.kubectl("create", "namespace", "istio-system")
    return api_server


@pytest.fixture(scope="module")
def deployed(cluster):
    """deploy/ applied once; a test that changes what it installed puts it back."""
    cluster.kubectl("apply", "-k", str(DEPLOY))
    return cluster


def can_i(api, who, *args) -> str:
    proc = api.kubectl("auth", "can-i", f"--as={who}", *args, check=False)
    return proc.stdout.strip()


@needs_apiserver
def test_apply_k_installs_everything(deployed):
    api = deployed
    api.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                "crd/protectedhosts.portcullis.io")
    for dep in ("portcullis-controller", "portcullis-authd"):
        out = json.loads(api.kubectl("get", "deployment", dep, "-n", NS, "-o", "json").stdout)
        assert out["spec"]["replicas"] == 2
    api.kubectl("get", "service/portcullis-authd", "pdb/portcullis-authd",
                "serviceaccount/portcullis-controller", "serviceaccount/portcullis-authd",
                "role/portcullis-controller", "rolebinding/portcullis-controller",
                "role/portcullis-authd", "rolebinding/portcullis-authd", "-n", NS)
    api.kubectl("get", "role/portcullis-controller-mesh", "rolebinding/portcullis-controller-mesh",
                "-n", "istio-system")
    api.kubectl("get", "clusterrole/portcullis-controller",
                "clusterrolebinding/portcullis-controller")
    # The CRD works: a ProtectedHost can be created and listed by its short name.
    api.kubectl("apply", "-f", "-", input=PROTECTED_HOST)
    assert "echo" in api.kubectl("get", "ph", "-n", "default").stdout


PROTECTED_HOST = """\
apiVersion: portcullis.io/v1alpha1
kind: ProtectedHost
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.example.com]
  oidc: {issuerURL: "https://idp.example.com/realms/main", clientID: echo}
"""

CONTROLLER_CAN = [
    ("list", "protectedhosts.portcullis.io", "-A"),
    ("watch", "protectedhosts.portcullis.io", "-A"),
    ("patch", "protectedhosts.portcullis.io", "-n", "default"),
    ("update", "protectedhosts.portcullis.io", "--subresource=status", "-n", "default"),
    ("update", "protectedhosts.portcullis.io", "--subresource=finalizers", "-n", "default"),
    ("patch", "authorizationpolicies.security.istio.io", "-n", "istio-system"),
    ("delete", "authorizationpolicies.security.istio.io", "-n", "istio-system"),
    ("list", "authorizationpolicies.security.istio.io", "-n", "istio-system"),
    ("list", "protectedhostpolicies.portcullis.io"),
    ("watch", "protectedhostpolicies.portcullis.io"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("get", "secrets", "-n", "default"),
    ("watch", "secrets", "-A"),
    ("create", "secrets", "-n", NS),
    ("patch", "secrets/portcullis-authd-config-00", "-n", NS),
    ("update", "secrets/portcullis-authd-config-ff", "-n", NS),
    ("list", "leases.coordination.k8s.io", "-n", NS),
    ("watch", "leases.coordination.k8s.io", "-n", NS),
    ("watch", "leases.coordination.k8s.io", "-A"),  # sidecars' Leases, read only
    ("update", "configmaps/istio", "-n", "istio-system"),
    ("create", "configmaps", "-n", "istio-system"),
    ("create", "events", "-n", "default"),
    ("create", "leases.coordination.k8s.io", "-n", NS),
    ("update", "leases.coordination.k8s.io/portcullis-controller", "-n", NS),
    ("list", "serviceentries.networking.istio.io", "-n", NS),
    ("patch", "serviceentries.networking.istio.io", "-n", NS),
    ("create", "serviceentries.networking.istio.io", "-n", NS),
    ("delete", "serviceentries.networking.istio.io", "-n", NS),
    ("watch", "ingresses.networking.k8s.io", "-A"),
    ("patch", "ingresses.networking.k8s.io", "-n", "default"),
]
CONTROLLER_CANNOT = [
    # AuthorizationPolicies only in the gateway namespaces: no confused deputy elsewhere.
    ("patch", "authorizationpolicies.security.istio.io", "-n", "default"),
    ("create", "authorizationpolicies.security.istio.io", "-n", "kube-system"),
    ("delete", "authorizationpolicies.security.istio.io", "-n", "gateways"),
    ("list", "authorizationpolicies.security.istio.io", "-A"),
    # The admin policy is the cluster admin's.
    ("create", "protectedhostpolicies.portcullis.io"),
    ("update", "protectedhostpolicies.portcullis.io/portcullis"),
    ("patch", "namespaces/default"),
    ("patch", "secrets/portcullis-authd-config", "-n", NS),
    ("delete", "pods", "-n", NS),
    ("create", "pods", "-n", "default"),
    ("create", "secrets", "-n", "default"),
    ("patch", "secrets/portcullis-cookie-secret", "-n", NS),
    ("delete", "secrets", "-n", NS),
    ("delete", "protectedhosts.portcullis.io", "-n", "default"),
    ("create", "protectedhosts.portcullis.io", "-n", "default"),
    ("get", "configmaps", "-n", "default"),
    ("update", "configmaps", "-n", "kube-system"),
    ("create", "leases.coordination.k8s.io", "-n", "default"),
    ("update", "deployments.apps", "-n", NS),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "nodes"),
    ("create", "serviceentries.networking.istio.io", "-n", "default"),
    ("patch", "serviceentries.networking.istio.io", "-n", "istio-system"),
    ("list", "serviceentries.networking.istio.io", "-A"),
    ("create", "ingresses.networking.k8s.io", "-n", "default"),
    ("update", "ingresses.networking.k8s.io", "-n", "default"),
    ("delete", "ingresses.networking.k8s.io", "-n", "default"),
]
# --watch-config: the config Secrets and its own Lease, in its namespace only.
AUTHD_CAN = [
    ("get", "secrets", "-n", NS),
    ("list", "secrets", "-n", NS),
    ("watch", "secrets", "-n", NS),
    ("get", "leases.coordination.k8s.io", "-n", NS),
    ("create", "leases.coordination.k8s.io", "-n", NS),
    ("update", "leases.coordination.k8s.io/portcullis-authd-x", "-n", NS),
    ("patch", "leases.coordination.k8s.io/portcullis-authd-x", "-n", NS),
    ("delete", "leases.coordination.k8s.io/portcullis-authd-x", "-n", NS),
]
AUTHD_CANNOT = [
    ("get", "secrets", "-n", "default"),
    ("list", "secrets", "-A"),
    ("watch", "secrets", "-n", "kube-system"),
    ("create", "secrets", "-n", NS),
    ("update", "secrets/portcullis-authd-config-00", "-n", NS),
    ("patch", "secrets/portcullis-cookie-secret", "-n", NS),
    ("delete", "secrets", "-n", NS),
    ("list", "protectedhosts.portcullis.io", "-A"),
    ("get", "configmaps", "-n", NS),
    ("create", "events", "-n", NS),
    ("get", "pods", "-n", NS),
    ("get", "leases.coordination.k8s.io", "-n", "default"),
    ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
    ("list", "namespaces"),
]


@needs_apiserver
@pytest.mark.parametrize("args", CONTROLLER_CAN, ids=lambda a: " ".join(a))
def test_controller_can(deployed, args):
    assert can_i(deployed, CONTROLLER_SA, *args) == "yes"


@needs_apiserver
@pytest.mark.parametrize("args", CONTROLLER_CANNOT, ids=lambda a: " ".join(a))
def test_controller_cannot(deployed, args):
    assert can_i(deployed, CONTROLLER_SA, *args) == "no"


@needs_apiserver
@pytest.mark.parametrize("args", AUTHD_CAN, ids=lambda a: " ".join(a))
def test_authd_can(deployed, args):
    assert can_i(deployed, AUTHD_SA, *args) == "yes"


@needs_apiserver
@pytest.mark.parametrize("args", AUTHD_CANNOT, ids=lambda a: " ".join(a))
def test_authd_cannot(deployed, args):
    assert can_i(deployed, AUTHD_SA, *args) == "no"


SELF_REVIEWS = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


def resource_rights(api, who, *args) -> set:
    out = api.kubectl("auth", "can-i", "--list", f"--as={who}", *args).stdout
    resources = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    return {r for r in resources if not r.startswith("[")} - SELF_REVIEWS  # non-resource URLs


@needs_apiserver
def test_authd_rights_end_at_its_namespace(deployed):
    """Secrets and Leases in its own namespace; elsewhere only what every authenticated user
    gets (self reviews), nothing from deploy/."""
    assert resource_rights(deployed, AUTHD_SA, "-n", NS) == {"secrets",
                                                             "leases.coordination.k8s.io"}
    assert resource_rights(deployed, AUTHD_SA, "-n", "default") == set()
    assert resource_rights(deployed, AUTHD_SA, "-n", "kube-system") == set()


AUTHD_CONFIG = """\
apiVersion: v1
kind: Secret
metadata:
  name: portcullis-authd-config-00
  namespace: portcullis-system
  labels: {portcullis.io/authd-config: shard}
  annotations: {portcullis.io/generation: "1"}
stringData:
  hosts.yaml: |
    hosts: []
"""

MESH_CM = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders: []
"""


@needs_apiserver
def test_controller_writes_work_under_its_own_identity(deployed):
    """What the controller does (server-side apply, field manager portcullis) is allowed,
    including creating an authd config shard through PATCH; the re-applied base keeps it."""
    api = deployed
    for manifest in (AUTHD_CONFIG, MESH_CM):
        api.kubectl("apply", "--server-side", "--field-manager=portcullis", f"--as={CONTROLLER_SA}",
                    "-f", "-", input=manifest)
    api.kubectl("apply", "-k", str(DEPLOY))
    data = json.loads(api.kubectl("get", "secret", "portcullis-authd-config-00", "-n", NS,
                                  "-o", "json").stdout)["data"]
    assert base64.b64decode(data["hosts.yaml"]) == b"hosts: []\n"
    denied = api.kubectl("apply", "--server-side", "--field-manager=portcullis",
                         f"--as={CONTROLLER_SA}", "-f", "-", check=False,
                         input=AUTHD_CONFIG.replace("portcullis-authd-config-00", "other"))
    assert denied.returncode != 0 and "forbidden" in denied.stderr


@needs_apiserver
def test_bootstrap_applies(deployed):
    api = deployed
    text = bootstrap()
    api.kubectl("apply", "-f", "-", input=text)
    secret = json.loads(api.kubectl("get", "secret", "portcullis-cookie-secret", "-n", NS,
                                    "-o", "json").stdout)
    assert len(base64.b64decode(secret["data"]["secret"])) == 43
    assert find(docs_of(text), "Secret", "portcullis-cookie-secret")["stringData"]["secret"] == \
        base64.b64decode(secret["data"]["secret"]).decode()


@needs_apiserver
def test_bootstrap_shared_mode_in_another_namespace(deployed):
    api = deployed
    api.kubectl("apply", "-f", "-", input=bootstrap("--mesh-config=shared", "--namespace=auth"))
    args = json.loads(api.kubectl("get", "deployment", "portcullis-controller", "-n", "auth",
                                  "-o", "json").stdout)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--mesh-config=shared" in args
    api.kubectl("get", "secret", "portcullis-cookie-secret", "-n", "auth")
    # The controller fills the shared ConfigMap; applying bootstrap again leaves its data alone.
    api.kubectl("patch", "configmap", "portcullis-mesh", "-n", "istio-system", "--type=merge",
                "-p", '{"data":{"mesh":"extensionProviders: []\\n"}}')
    api.kubectl("apply", "-f", "-", input=bootstrap("--mesh-config=shared", "--namespace=auth"))
    cm = json.loads(api.kubectl("get", "configmap", "portcullis-mesh", "-n", "istio-system",
                                "-o", "json").stdout)
    assert cm["data"]["mesh"] == "extensionProviders: []\n"
    sa = "system:serviceaccount:auth:portcullis-controller"
    assert can_i(api, sa, "create", "secrets", "-n", "auth") == "yes"
    assert can_i(api, sa, "create", "secrets", "-n", NS) == "no"
    # Put the base back for any test that runs after this one.
    api.kubectl("apply", "-k", str(DEPLOY))


@needs_apiserver
def test_bootstrap_none_mode_server_dry_run(cluster):
    text = bootstrap("--mesh-config=none")
    assert "portcullis-controller-mesh" not in text
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
