"""portcullis-controller against a real kube-apiserver, driven with kubectl like a user.

The controller runs as the `portcullis-controller` user with the RBAC of deploy/ bound to it,
so a missing permission fails here as it would in a cluster. Istio's own validation
(istio-validate) checks every policy the controller wrote and the mesh config it merged.
"""

from __future__ import annotations

import base64
import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.kube import ApiServer, istio_validate  # noqa: E402,F401  (fixture)
from e2e.harness.proc import (CONTROLLER, REPO, Proc, built, free_port, http,  # noqa: E402
                              metric_value, skip_e2e)
from e2e.harness.proc import wait_for as poll  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

ISTIO_MESH = """\
accessLogFile: /dev/stdout
defaultConfig:
  holdApplicationUntilProxyStarts: true
extensionProviders:
- name: otel
  opentelemetry: {port: 4317, service: otel.observability.svc.cluster.local}
rootNamespace: istio-system
"""

USER_BINDINGS = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis-controller-e2e-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-controller}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: portcullis-controller-e2e-user, namespace: portcullis-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: portcullis-controller-mesh-e2e-user, namespace: istio-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller-mesh}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: portcullis-controller-gateway-e2e-user, namespace: istio-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller-gateway}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
"""


def controller_path() -> str:
    return built(CONTROLLER, "PORTCULLIS_CONTROLLER")


# Polls until truthy, failing with `what` on timeout; kubectl and parsing errors count as not yet.
wait_for = functools.partial(poll, timeout=30.0,
                             ignore=(RuntimeError, KeyError, IndexError, json.JSONDecodeError))


class Controller:
    """One `portcullis-controller run` process with its log in the apiserver's workdir."""

    def __init__(self, api: ApiServer, lease: str = "portcullis-controller", name: str = "ctl",
                 extra: tuple[str, ...] = ("--wait-for-authd=false",)):
        # No authd runs beside these controllers: nothing reports what it enforces.
        self.api = api
        self.lease = lease
        self.name = name
        self.extra = list(extra)
        self.port = 0
        self.proc: Proc | None = None
        self.log = api.workdir / f"{name}.log"

    def start(self) -> "Controller":
        self.port = free_port()
        self.proc = Proc(self.name, [
            controller_path(), "run", "--kubeconfig", self.api.controller_kubeconfig,
            "--metrics-addr", f"127.0.0.1:{self.port}", "--lease-name", self.lease,
            "--resync-period", "0", "--log-level", "debug", *self.extra],
            log_path=self.log).start()
        return self

    def stop(self, sig=signal.SIGTERM) -> int | None:
        """Stops the process by its pid (SIGKILL: a crash, no lease release); its exit status."""
        if self.proc is None:
            return None
        rc = self.proc.stop(sig=sig)
        self.proc = None
        return rc

    def admin(self, path: str) -> tuple[int, str]:
        try:
            status, _, body = http("GET", f"http://127.0.0.1:{self.port}{path}", timeout=5)
            return status, body.decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float | None:
        return metric_value(self.admin("/metrics")[1], name)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def api():
    if skip_e2e():
        pytest.skip("PORTCULLIS_SKIP_E2E=1")
    with ApiServer() as a:
        a.install_istio_crds()
        a.kubectl("apply", "-f", str(REPO / "deploy" / "namespace.yaml"))
        for ns in ("istio-system", "team-a", "team-b"):
            a.kubectl("create", "namespace", ns)
        a.kubectl("apply", "-f", str(REPO / "crds" / "protectedhost.yaml"))
        a.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/protectedhosts.portcullis.io")
        a.kubectl("apply", "-f", str(REPO / "deploy" / "controller-rbac.yaml"),
                  "-f", str(REPO / "deploy" / "controller-mesh-rbac.yaml"),
                  "-f", str(REPO / "deploy" / "controller-gateway-rbac.yaml"))
        a.kubectl("apply", "-f", "-", input=USER_BINDINGS)
        a.kubectl("create", "configmap", "istio", "-n", "istio-system",
                  f"--from-literal=mesh={ISTIO_MESH}")
        yield a


@pytest.fixture(scope="module")
def ctl(api):
    c = Controller(api, lease="portcullis-controller-e2e")
    try:
        c.start()
        wait_for("controller ready", lambda: c.admin("/readyz")[0] == 200, timeout=30)
        yield c
    finally:
        c.stop()


def kjson(api, *args):
    return json.loads(api.kubectl("get", "-o", "json", *args).stdout)


def ph_manifest(name, ns, hosts, secret="oidc", groups=("admins",), extra="",
                issuer="https://idp.example.com/realms/main"):
    return f"""\
apiVersion: portcullis.io/v1alpha1
kind: ProtectedHost
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: {json.dumps(list(hosts))}
  oidc:
    issuerURL: {issuer}
    clientID: {name}
    clientSecretRef: {{name: {secret}, key: client-secret}}
  access:
    allowedGroups: {json.dumps(list(groups))}
{extra}"""


def condition(api, ns, name, ctype):
    obj = kjson(api, "protectedhost", "-n", ns, name)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def authd_config(api) -> str:
    """The hosts.yaml of every authd config shard, joined."""
    secs = kjson(api, "secret", "-n", "portcullis-system", "-l", "portcullis.io/authd-config=shard")
    return "".join(base64.b64decode(s["data"]["hosts.yaml"]).decode() for s in secs["items"])


def mesh_text(api) -> str:
    return kjson(api, "configmap", "-n", "istio-system", "istio")["data"]["mesh"]


def policy(api, name, check=True):
    proc = api.kubectl("get", "-o", "json", "authorizationpolicy", "-n", "istio-system", name,
                       check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def policies_as_written(api, resource="authorizationpolicies", *where) -> str:
    """Every AuthorizationPolicy (or other resource) as a YAML stream, without the server's
    bookkeeping."""
    docs = []
    for item in kjson(api, resource, *(where or ("-A",)))["items"]:
        md = item["metadata"]
        keep = {k: md[k] for k in ("name", "namespace", "labels", "annotations") if k in md}
        docs.append(json.dumps({"apiVersion": item["apiVersion"], "kind": item["kind"],
                                "metadata": keep, "spec": item["spec"]}))
    return "\n---\n".join(docs) + "\n"


def secret(api, ns, name, value):
    api.kubectl("create", "secret", "generic", name, "-n", ns,
                f"--from-literal=client-secret={value}")


# ---- the CRD on its own -----------------------------------------------------------------------


INVALID = [
    ("hosts: [Bad_Host.example.com]", "spec.hosts[0]"),
    ("hosts: []", "spec.hosts"),
    ("hosts: [a.example.com, a.example.com]", "spec.hosts[1]"),
    ("hosts: [a.example.com]\n  mode: Audit", "spec.mode"),
    ("hosts: [a.example.com]\n  session: {sameSite: lax}", "spec.session.sameSite"),
    ("hosts: [a.example.com]\n  upstreamHeaders: [{name: 'X Bad', claim: sub}]",
     "spec.upstreamHeaders[0].name"),
]


@pytest.mark.parametrize("spec,field", INVALID)
def test_invalid_resource_refused_by_schema(api, spec, field):
    doc = f"""\
apiVersion: portcullis.io/v1alpha1
kind: ProtectedHost
metadata: {{name: invalid, namespace: team-a}}
spec:
  {spec}
  oidc: {{issuerURL: https://idp.example.com, clientID: c}}
"""
    proc = api.kubectl("apply", "-f", "-", input=doc, check=False)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr


def test_schema_requires_oidc_fields_and_callback_path(api):
    doc = """\
apiVersion: portcullis.io/v1alpha1
kind: ProtectedHost
metadata: {name: invalid, namespace: team-a}
spec:
  hosts: [a.example.com]
  oidc: {issuerURL: "ftp://idp", callbackPath: "oauth2/callback"}
"""
    proc = api.kubectl("apply", "-f", "-", input=doc, check=False)
    assert proc.returncode != 0
    for field in ("spec.oidc.issuerURL", "spec.oidc.clientID"):
        assert field in proc.stderr, proc.stderr
    # CEL rules run once the structural checks pass
    doc = doc.replace('issuerURL: "ftp://idp"', 'issuerURL: "https://idp", clientID: c')
    proc = api.kubectl("apply", "-f", "-", input=doc, check=False)
    assert proc.returncode != 0
    assert "spec.oidc.callbackPath" in proc.stderr and "must be an absolute path" in proc.stderr


def test_schema_gateway_selector_or_name(api):
    both = ph_manifest("gw", "team-a", ["g.example.com"],
                       extra="  gateway: {name: public, selector: {istio: x}}\n")
    proc = api.kubectl("apply", "--dry-run=server", "-f", "-", input=both, check=False)
    assert proc.returncode != 0 and "not both" in proc.stderr, proc.stderr
    named = ph_manifest("gw", "team-a", ["g.example.com"],
                        extra="  gateway: {namespace: istio-ingress, name: public}\n")
    out = json.loads(api.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-",
                                 input=named).stdout)
    assert out["spec"]["gateway"] == {"namespace": "istio-ingress", "name": "public"}


def test_schema_defaults(api):
    out = json.loads(api.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-",
                                 input=ph_manifest("defaults", "team-a",
                                                   ["d.example.com"])).stdout)
    spec = out["spec"]
    # selector's default (istio: ingressgateway) is the controller's: a ProtectedHost that names
    # a Gateway API Gateway has none.
    assert spec["gateway"] == {"namespace": "istio-system"}
    assert spec["oidc"]["callbackPath"] == "/oauth2/callback"
    assert spec["oidc"]["scopes"] == ["openid", "email", "profile"]
    assert spec["session"]["cookieName"] == "_portcullis"
    assert spec["mode"] == "Enforce"
    assert [h["name"] for h in spec["upstreamHeaders"]][0] == "X-Auth-Request-User"


# ---- the controller -------------------------------------------------------------------------------


def test_apply_update_delete(api, ctl, istio_validate, tmp_path):
    secret(api, "team-a", "oidc", "team-a-client-secret")
    api.kubectl("apply", "-f", "-", input=ph_manifest("echo", "team-a", ["echo.example.com"]))
    pol = wait_for("policy", lambda: policy(api, "portcullis-team-a-echo"))
    op = pol["spec"]["rules"][0]["to"][0]["operation"]
    assert op["hosts"] == ["echo.example.com", "echo.example.com:*", "echo.example.com.",
                           "echo.example.com.:*"]
    assert pol["spec"]["action"] == "CUSTOM"
    assert pol["spec"]["provider"] == {"name": "portcullis"}
    assert pol["metadata"]["labels"]["portcullis.io/owner-namespace"] == "team-a"
    wait_for("Ready", lambda: (condition(api, "team-a", "echo", "Ready") or {}).get("status")
             == "True")
    cfg = wait_for("authd config", lambda: "team-a/echo" in authd_config(api) and authd_config(api))
    assert "clientSecret: team-a-client-secret" in cfg
    mesh = wait_for("provider", lambda: "name: portcullis" in mesh_text(api) and mesh_text(api))
    assert "timeout: 2s" in mesh and 'statusOnError: "503"' in mesh
    status = kjson(api, "protectedhost", "-n", "team-a", "echo")["status"]
    assert status["authorizationPolicy"] == "istio-system/portcullis-team-a-echo"
    assert status["observedGeneration"] == 1

    # update: another host and an extra identity header
    extra = ("  upstreamHeaders:\n  - {name: X-Auth-Request-Email, claim: email}\n"
             "  - {name: X-Team, claim: team}\n  paths: {skip: [/healthz]}\n")
    api.kubectl("apply", "-f", "-", input=ph_manifest("echo", "team-a",
                                                       ["echo.example.com", "echo2.example.com"],
                                                       extra=extra))
    wait_for("policy update", lambda: "echo2.example.com:*" in json.dumps(
        policy(api, "portcullis-team-a-echo")))
    op = policy(api, "portcullis-team-a-echo")["spec"]["rules"][0]["to"][0]["operation"]
    assert op["notPaths"] == ["/healthz"]
    wait_for("mesh header", lambda: "- x-team" in mesh_text(api))
    wait_for("observedGeneration 2", lambda: kjson(api, "protectedhost", "-n", "team-a", "echo")
             .get("status", {}).get("observedGeneration") == 2)

    # everything written passes Istio's own validation
    pols = tmp_path / "policies.yaml"
    pols.write_text(policies_as_written(api))
    meshf = tmp_path / "mesh.yaml"
    meshf.write_text(mesh_text(api))
    for args in (["policy", str(pols)], ["mesh", str(meshf)]):
        proc = subprocess.run([istio_validate, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr + proc.stdout

    # delete: policy, authd entry and the object itself go
    api.kubectl("delete", "protectedhost", "-n", "team-a", "echo", "--timeout=30s")
    wait_for("policy gone", lambda: policy(api, "portcullis-team-a-echo") is None)
    wait_for("authd entry gone", lambda: "team-a/echo" not in authd_config(api))
    wait_for("mesh header gone", lambda: "- x-team" not in mesh_text(api))


def envoyfilter(api, name, ns="istio-system"):
    proc = api.kubectl("get", "-o", "json", "envoyfilter", "-n", ns, name, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_wildcard_host_brings_its_envoyfilter(api, ctl, istio_validate, tmp_path):
    """A policy with a wildcard host cannot match it with a port; the EnvoyFilter that strips
    ports at the same gateway goes and comes with the wildcard, and outlives no owner."""
    name = "portcullis-team-a-wild"
    api.kubectl("apply", "-f", "-", input=ph_manifest("wild", "team-a",
                                                       ["*.wild.example.com", "wild.example.com"]))
    ef = wait_for("EnvoyFilter", lambda: envoyfilter(api, name))
    assert ef["spec"]["workloadSelector"] == {"labels": {"istio": "ingressgateway"}}
    hcm = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
    assert hcm["strip_any_host_port"] is True and hcm["strip_trailing_host_dot"] is True
    assert ef["metadata"]["labels"]["portcullis.io/owner-namespace"] == "team-a"
    wait_for("policy", lambda: policy(api, name))
    written = tmp_path / "written.yaml"
    written.write_text(policies_as_written(api, "envoyfilters", "-n", "istio-system"))
    proc = subprocess.run([istio_validate, "policy", str(written)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout

    # exact hosts only: the filter goes, the policy stays
    api.kubectl("apply", "-f", "-", input=ph_manifest("wild", "team-a", ["wild.example.com"]))
    wait_for("EnvoyFilter gone", lambda: envoyfilter(api, name) is None)
    assert policy(api, name) is not None

    # a wildcard again, then an orphan left while the controller was down
    api.kubectl("apply", "-f", "-", input=ph_manifest("wild", "team-a", ["*.wild.example.com"]))
    ef = wait_for("EnvoyFilter back", lambda: envoyfilter(api, name))
    ctl.stop()
    try:
        orphan = {k: ef[k] for k in ("apiVersion", "kind", "spec")}
        orphan["metadata"] = {"name": "portcullis-nobody-wild", "namespace": "istio-system",
                              "labels": ef["metadata"]["labels"]}
        api.kubectl("apply", "-f", "-", input=json.dumps(orphan))
    finally:
        ctl.start()
    wait_for("orphan gone", lambda: envoyfilter(api, "portcullis-nobody-wild") is None)
    assert envoyfilter(api, name) is not None

    api.kubectl("delete", "protectedhost", "-n", "team-a", "wild", "--timeout=30s")
    wait_for("policy gone", lambda: policy(api, name) is None)
    assert envoyfilter(api, name) is None


def test_other_mesh_fields_untouched(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("keep", "team-a", ["keep.example.com"]))
    mesh = wait_for("provider", lambda: "name: portcullis" in mesh_text(api) and mesh_text(api))
    assert mesh.startswith("accessLogFile: /dev/stdout\ndefaultConfig:\n"
                           "  holdApplicationUntilProxyStarts: true\nextensionProviders:\n"
                           "- name: otel\n")
    assert "service: otel.observability.svc.cluster.local" in mesh
    assert mesh.index("name: otel") < mesh.index("name: portcullis") < mesh.index("rootNamespace")
    api.kubectl("delete", "protectedhost", "-n", "team-a", "keep", "--timeout=30s")


def test_missing_secret_then_ready(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("late", "team-b", ["late.example.com"],
                                                       secret="late-oidc"))
    ready = wait_for("SecretNotFound", lambda: condition(api, "team-b", "late", "Ready"))
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound", ready
    assert condition(api, "team-b", "late", "Accepted")["status"] == "True"
    # fail closed: the policy exists, so the host is never open while the secret is missing
    assert policy(api, "portcullis-team-b-late") is not None
    events = api.kubectl("get", "events", "-n", "team-b").stdout
    assert "SecretNotFound" in events
    secret(api, "team-b", "late-oidc", "late-secret")
    wait_for("Ready", lambda: condition(api, "team-b", "late", "Ready")["status"] == "True")
    assert "clientSecret: late-secret" in authd_config(api)
    # a changed Secret flows into authd's config
    api.kubectl("patch", "secret", "late-oidc", "-n", "team-b", "-p",
                json.dumps({"data": {"client-secret": base64.b64encode(b"rotated").decode()}}))
    wait_for("rotated secret", lambda: "clientSecret: rotated" in authd_config(api))
    api.kubectl("delete", "protectedhost", "-n", "team-b", "late", "--timeout=30s")


def test_restart_never_drops_a_host_from_authds_config(api, ctl):
    """After a restart (or failover) the controller holds no Secret data yet (it watches
    metadata only): the hosts that name one must stay in authd's config throughout, also
    while the key workers are still going through them."""
    names = [f"steady-{i}" for i in range(30)]
    secret(api, "team-b", "steady-oidc", "steady-secret")
    api.kubectl("apply", "-f", "-", input="---\n".join(
        ph_manifest(n, "team-b", [f"{n}.example.com"], secret="steady-oidc") for n in names))
    wait_for("all Ready", lambda: all((condition(api, "team-b", n, "Ready") or {}).get("status")
                                      == "True" for n in names), timeout=60)
    assert authd_config(api).count("clientSecret: steady-secret") == len(names)
    try:
        ctl.stop()
        ctl.start()
        wait_for("controller ready", lambda: ctl.admin("/readyz")[0] == 200, timeout=30)
        # The first resync re-renders every host and the global writer follows within
        # seconds: sample the shards over that window.
        end = time.monotonic() + 8
        while time.monotonic() < end:
            assert authd_config(api).count("clientSecret: steady-secret") == len(names)
            time.sleep(0.1)
    finally:
        api.kubectl("delete", "protectedhost", "-n", "team-b", *names, "--timeout=60s")


def test_host_conflict(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("first", "team-a", ["shared.example.com"]))
    wait_for("first accepted", lambda: (condition(api, "team-a", "first", "Accepted") or {})
             .get("status") == "True")
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    api.kubectl("apply", "-f", "-", input=ph_manifest("second", "team-b",
                                                       ["other.example.com",
                                                        "shared.example.com"]))
    acc = wait_for("conflict", lambda: condition(api, "team-b", "second", "Accepted"))
    assert acc["status"] == "False" and acc["reason"] == "HostConflict", acc
    assert "team-a/first" in acc["message"]
    assert policy(api, "portcullis-team-b-second") is None
    assert "team-b/second" not in authd_config(api)
    # the older one goes away: the newer one takes over
    api.kubectl("delete", "protectedhost", "-n", "team-a", "first", "--timeout=30s")
    wait_for("second accepted", lambda: condition(api, "team-b", "second", "Accepted")["status"]
             == "True")
    wait_for("second policy", lambda: policy(api, "portcullis-team-b-second"))
    api.kubectl("delete", "protectedhost", "-n", "team-b", "second", "--timeout=30s")


def test_cookie_conflict(api, ctl):
    """Another client's shared cookie on the same name would reach the newer host: the newer
    one is refused (CookieConflict), and gets in once it picks another cookie name."""
    api.kubectl("apply", "-f", "-", input=ph_manifest(
        "portal", "team-a", ["portal.corp.example.com"],
        extra="  session: {cookieDomain: .corp.example.com}\n"))
    wait_for("portal accepted", lambda: (condition(api, "team-a", "portal", "Accepted") or {})
             .get("status") == "True")
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    api.kubectl("apply", "-f", "-", input=ph_manifest("wiki", "team-b", ["wiki.corp.example.com"]))
    acc = wait_for("cookie conflict", lambda: condition(api, "team-b", "wiki", "Accepted"))
    assert acc["status"] == "False" and acc["reason"] == "CookieConflict", acc
    assert "team-a/portal" in acc["message"] and "spec.session.cookieName" in acc["message"]
    assert policy(api, "portcullis-team-b-wiki") is None
    assert "team-b/wiki" not in authd_config(api)
    api.kubectl("apply", "-f", "-", input=ph_manifest("wiki", "team-b", ["wiki.corp.example.com"],
                                                       extra="  session: {cookieName: _wiki}\n"))
    wait_for("wiki accepted", lambda: condition(api, "team-b", "wiki", "Accepted")["status"]
             == "True")
    wait_for("wiki policy", lambda: policy(api, "portcullis-team-b-wiki"))
    for ns, name in (("team-b", "wiki"), ("team-a", "portal")):
        api.kubectl("delete", "protectedhost", "-n", ns, name, "--timeout=30s")


def test_get_columns(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("cols", "team-a", ["cols.example.com"],
                                                       groups=["sre", "ops"]))
    wait_for("Ready", lambda: (condition(api, "team-a", "cols", "Ready") or {}).get("status"))
    out = api.kubectl("get", "ph", "-n", "team-a", "cols").stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "HOSTS", "GROUPS", "READY", "AGE"]
    assert '["cols.example.com"]' in row and '["sre","ops"]' in row
    api.kubectl("delete", "protectedhost", "-n", "team-a", "cols", "--timeout=30s")


def test_metrics_and_health(ctl):
    assert ctl.admin("/healthz")[0] == 200
    assert ctl.admin("/readyz")[0] == 200
    status, text = ctl.admin("/metrics")
    assert status == 200
    assert 'portcullis_controller_reconciles_total{result="success"}' in text
    assert "portcullis_controller_apply_duration_seconds_bucket" in text
    assert ctl.metric("portcullis_controller_leader") == 1
    assert ctl.metric("portcullis_controller_queue_depth") is not None


def test_apiserver_restart_converges(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("before", "team-a", ["before.example.com"]))
    wait_for("policy", lambda: policy(api, "portcullis-team-a-before"))
    api.restart()
    api.kubectl("apply", "-f", "-", input=ph_manifest("after", "team-a", ["after.example.com"]))
    wait_for("policy after restart", lambda: policy(api, "portcullis-team-a-after"), timeout=60)
    api.kubectl("delete", "protectedhost", "-n", "team-a", "before", "after", "--timeout=60s")
    wait_for("policies gone", lambda: policy(api, "portcullis-team-a-after") is None
             and policy(api, "portcullis-team-a-before") is None, timeout=60)


def test_restart_converges_and_removes_orphans(api, ctl):
    api.kubectl("apply", "-f", "-", input=ph_manifest("gone", "team-a", ["gone.example.com"]))
    wait_for("policy", lambda: policy(api, "portcullis-team-a-gone"))
    ctl.stop()
    # while it is down: the object is deleted (its finalizer holds it) and an orphan appears
    api.kubectl("delete", "protectedhost", "-n", "team-a", "gone", "--wait=false")
    orphan = json.loads(json.dumps(policy(api, "portcullis-team-a-gone")))
    for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        orphan["metadata"].pop(k, None)
    orphan["metadata"]["name"] = "portcullis-nobody-home"
    api.kubectl("apply", "-f", "-", input=json.dumps(orphan))
    ctl.start()
    wait_for("finalized", lambda: api.kubectl("get", "protectedhost", "-n", "team-a", "gone",
                                              check=False).returncode != 0)
    wait_for("policy gone", lambda: policy(api, "portcullis-team-a-gone") is None)
    wait_for("orphan gone", lambda: policy(api, "portcullis-nobody-home") is None)


def test_two_replicas_one_leader_and_failover(api, ctl):
    ctl.stop()
    a = Controller(api, lease="portcullis-ha", name="ha-a")
    b = Controller(api, lease="portcullis-ha", name="ha-b")
    try:
        a.start()
        b.start()
        leaders = wait_for("a leader", lambda: [c for c in (a, b)
                                                if c.metric("portcullis_controller_leader") == 1])
        time.sleep(2)
        leaders = [c for c in (a, b) if c.metric("portcullis_controller_leader") == 1]
        assert len(leaders) == 1
        leader, standby = leaders[0], (b if leaders[0] is a else a)
        assert standby.admin("/readyz")[0] == 200  # warm caches on the standby
        leader.stop(signal.SIGKILL)  # a crash: no lease release, the lease must expire
        wait_for("failover", lambda: standby.metric("portcullis_controller_leader") == 1,
                 timeout=45)
        api.kubectl("apply", "-f", "-", input=ph_manifest("ha", "team-a", ["ha.example.com"]))
        wait_for("policy by the new leader", lambda: policy(api, "portcullis-team-a-ha"))
        api.kubectl("delete", "protectedhost", "-n", "team-a", "ha", "--timeout=30s")
    finally:
        a.stop()
        b.stop()
        ctl.start()


def test_mesh_none_snippet_event(api, ctl):
    """--mesh-config=none: the provider goes to an Event on the ProtectedHost, nothing is written
    to the mesh config."""
    ctl.stop()
    mesh_before = mesh_text(api)
    none = Controller(api, lease="portcullis-none", name="none",
                      extra=("--mesh-config=none", "--wait-for-authd=false"))
    try:
        none.start()
        wait_for("controller ready", lambda: none.admin("/readyz")[0] == 200)
        secret(api, "team-b", "snip-oidc", "snip-secret")
        extra = "  upstreamHeaders:\n  - {name: X-Snip-User, claim: sub}\n"
        api.kubectl("apply", "-f", "-", input=ph_manifest("snip", "team-b", ["snip.example.com"],
                                                           secret="snip-oidc", extra=extra))
        wait_for("Ready", lambda: (condition(api, "team-b", "snip", "Ready") or {})
                 .get("status") == "True")
        events = wait_for("ProviderSnippet event", lambda: [
            e for e in kjson(api, "events", "-n", "team-b")["items"]
            if e["reason"] == "ProviderSnippet" and e["involvedObject"]["name"] == "snip"])
        ev = events[0]
        assert ev["type"] == "Normal"
        assert ev["involvedObject"]["kind"] == "ProtectedHost"
        msg = ev["message"]
        assert len(msg.encode()) <= 1024
        prefix = "add to meshConfig.extensionProviders: "
        assert msg.startswith(prefix), msg
        entry = json.loads(msg[len(prefix):])  # JSON flow style: YAML reads it as it is
        ext = entry["envoyExtAuthzHttp"]
        assert entry["name"] == "portcullis"
        assert ext["timeout"] == "2s" and ext["statusOnError"] == "503"
        assert ext["service"] == "portcullis-authd.portcullis-system.svc.cluster.local"
        assert "x-snip-user" in ext["headersToUpstreamOnAllow"]
        assert "cookie" in ext["includeRequestHeadersInCheck"]
        assert len(events) == 1  # once per snippet, not per reconcile
        assert mesh_text(api) == mesh_before  # nothing merged into the mesh config
        assert "team-b/snip" in authd_config(api)
        api.kubectl("delete", "protectedhost", "-n", "team-b", "snip", "--timeout=30s")
        wait_for("policy gone", lambda: policy(api, "portcullis-team-b-snip") is None)
    finally:
        none.stop()
        ctl.start()


def serviceentries(api) -> dict:
    """The controller's ServiceEntries in authd's namespace, by issuer host."""
    items = kjson(api, "serviceentries.networking.istio.io", "-n", "portcullis-system",
                  "-l", "portcullis.io/egress=issuer")["items"]
    return {se["spec"]["hosts"][0]: se for se in items}


def test_egress_service_entries(api, ctl, istio_validate, tmp_path):
    """--egress-service-entries: one ServiceEntry per issuer host of the accepted
    ProtectedHosts, in authd's namespace and exported only to it; an issuer's entry goes with
    the last ProtectedHost that uses it."""
    ctl.stop()
    eg = Controller(api, lease="portcullis-egress", name="egress",
                    extra=("--egress-service-entries", "--wait-for-authd=false"))
    one, two = "login.idp-one.example.com", "idp-two.example.com"
    try:
        eg.start()
        wait_for("controller ready", lambda: eg.admin("/readyz")[0] == 200)
        secret(api, "team-b", "eg-oidc", "eg-secret")
        for name, host, issuer in (
                ("eg-one", "eg-one.example.com", f"https://{one}/realms/a"),
                ("eg-two", "eg-two.example.com", f"https://{one.upper()}/realms/b"),
                ("eg-three", "eg-three.example.com", f"https://{two}:8443/oauth2/default")):
            api.kubectl("apply", "-f", "-", input=ph_manifest(name, "team-b", [host],
                                                               secret="eg-oidc", issuer=issuer))
        # refused (an older ProtectedHost has its host): its issuer gets nothing
        api.kubectl("apply", "-f", "-", input=ph_manifest(
            "eg-zlater", "team-b", ["eg-one.example.com"], secret="eg-oidc",
            issuer="https://refused.example.com/"))
        wait_for("HostConflict", lambda: (condition(api, "team-b", "eg-zlater", "Accepted") or {})
                 .get("reason") == "HostConflict")
        wait_for("Ready", lambda: all((condition(api, "team-b", n, "Ready") or {})
                                      .get("status") == "True"
                                      for n in ("eg-one", "eg-two", "eg-three")))
        ses = wait_for("a ServiceEntry per issuer host",
                       lambda: set(serviceentries(api)) == {one, two} and serviceentries(api))
        for host, port in ((one, 443), (two, 8443)):
            se = ses[host]
            assert se["metadata"]["namespace"] == "portcullis-system"
            assert se["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "portcullis"
            assert se["spec"] == {
                "hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                "ports": [{"number": port, "name": "https", "protocol": "TLS"}],
                "exportTo": ["."]}
        # as written, they pass Istio's own validation
        written = tmp_path / "serviceentries.yaml"
        written.write_text(policies_as_written(api, "serviceentries.networking.istio.io", "-n",
                                               "portcullis-system"))
        proc = subprocess.run([istio_validate, "policy", str(written)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr + proc.stdout

        # the last user of an issuer goes: so does its entry; a shared issuer's entry stays
        api.kubectl("delete", "protectedhost", "-n", "team-b", "eg-three", "--timeout=30s")
        wait_for("idp-two's entry gone", lambda: set(serviceentries(api)) == {one})
        api.kubectl("delete", "protectedhost", "-n", "team-b", "eg-one", "--timeout=30s")
        # eg-zlater now holds eg-one's host: its issuer is accepted now
        wait_for("refused issuer now used",
                 lambda: set(serviceentries(api)) == {one, "refused.example.com"})
        # deleted by hand: put back by the next pass (the one eg-zlater's deletion makes)
        api.kubectl("delete", "serviceentries.networking.istio.io", "-n", "portcullis-system",
                    ses[one]["metadata"]["name"])
        api.kubectl("delete", "protectedhost", "-n", "team-b", "eg-zlater", "--timeout=30s")
        wait_for("only eg-two's issuer left", lambda: set(serviceentries(api)) == {one})
        api.kubectl("delete", "protectedhost", "-n", "team-b", "eg-two", "--timeout=30s")
        wait_for("no entries left", lambda: serviceentries(api) == {})
    finally:
        eg.stop()
        api.kubectl("delete", "protectedhost", "-n", "team-b", "eg-one", "eg-two", "eg-three",
                    "eg-zlater", "--ignore-not-found", "--timeout=30s", check=False)
        ctl.start()


# ---- render -------------------------------------------------------------------------------------


def test_render_is_deterministic_and_valid(api, istio_validate, tmp_path):
    # the top-level examples; examples/gitops holds copies of some of them (rendered on its own)
    files = sorted((REPO / "examples").glob("*.yaml"))
    cmd = [controller_path(), "render", *[a for f in files for a in ("-f", str(f))]]
    one = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    two = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    assert one == two and one
    out = tmp_path / "out"
    subprocess.run([*cmd, "-o", str(out)], check=True, timeout=60)
    policies = sorted(out.glob("authorizationpolicy-*.yaml"))
    assert len(policies) == 5
    filters = sorted(out.glob("envoyfilter-*.yaml"))
    assert [f.name for f in filters] == ["envoyfilter-portcullis-shop-orders-api.yaml"]
    policies += filters
    proc = subprocess.run([istio_validate, "policy", *map(str, policies)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([istio_validate, "mesh", str(out / "mesh-config.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the apiserver (with Istio's CRDs) accepts them too
    for p in policies:
        api.kubectl("apply", "--dry-run=server", "-f", str(p))
    api.kubectl("apply", "--dry-run=server", "-f", str(out / "authd-config-secrets.yaml"))


def test_render_of_sidecar_mode_is_valid(api, istio_validate, tmp_path):
    """examples/sidecar next to a gateway host, with and without skip paths (a rule with no
    operation: Istio refuses an empty one): Istio's validation and the apiserver accept the
    workload's policy, the ServiceEntry of the local name, the namespace's shard and a mesh
    config with both providers."""
    ph = yaml.safe_load((REPO / "examples" / "sidecar" / "protectedhost.yaml").read_text())
    bare = {**ph, "metadata": {"name": "bare", "namespace": "team-b"},
            "spec": {k: v for k, v in ph["spec"].items() if k != "paths"}}
    bare["spec"]["hosts"] = ["bare.example.com"]
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(bare))
    out = tmp_path / "out"
    subprocess.run([controller_path(), "render", "-f", str(REPO / "examples" / "echoserver.yaml"),
                    str(REPO / "examples" / "sidecar" / "protectedhost.yaml"),
                    str(tmp_path / "bare.yaml"), "-o", str(out)], check=True, timeout=60)
    docs = sorted(out.glob("authorizationpolicy-*.yaml")) + sorted(out.glob("serviceentry-*.yaml"))
    assert [d.name for d in docs] == [
        "authorizationpolicy-portcullis-team-a-echo.yaml",
        "authorizationpolicy-portcullis-team-b-bare.yaml",
        "authorizationpolicy-portcullis-test-auth-echo.yaml",
        "serviceentry-team-a-portcullis-authd-local.yaml",
        "serviceentry-team-b-portcullis-authd-local.yaml"]
    assert yaml.safe_load(docs[1].read_text())["spec"]["rules"] == [{}]
    proc = subprocess.run([istio_validate, "policy", *map(str, docs)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mesh = out / "mesh-config.yaml"
    assert [p["name"] for p in yaml.safe_load(mesh.read_text())["extensionProviders"]] == [
        "portcullis", "portcullis-local"]
    proc = subprocess.run([istio_validate, "mesh", str(mesh)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for ns in ("team-a", "team-b"):
        api.kubectl("create", "namespace", ns, check=False)
    for p in [*docs, *sorted(out.glob("authd-sidecar-config-*.yaml"))]:
        api.kubectl("apply", "--dry-run=server", "-f", str(p))


def test_egress_failure_is_reported(api, ctl):
    """When the ServiceEntries cannot be written (here: the Role lost its rule), Ready says so;
    once they can, the next pass writes them and Ready turns True."""
    ctl.stop()
    eg = Controller(api, lease="portcullis-egress-fail", name="egress-fail",
                    extra=("--egress-service-entries", "--wait-for-authd=false"))
    role = kjson(api, "role", "-n", "portcullis-system", "portcullis-controller")
    role["rules"] = [r for r in role["rules"] if "networking.istio.io" not in r["apiGroups"]]
    for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(k, None)
    try:
        api.kubectl("replace", "-f", "-", input=json.dumps(role))
        eg.start()
        wait_for("controller ready", lambda: eg.admin("/readyz")[0] == 200)
        secret(api, "team-b", "egf-oidc", "egf-secret")
        api.kubectl("apply", "-f", "-", input=ph_manifest(
            "egf", "team-b", ["egf.example.com"], secret="egf-oidc",
            issuer="https://idp-fail.example.com/realms/x"))
        ready = wait_for("EgressNotApplied", lambda: (lambda c: c if c.get("reason")
                                                      == "EgressNotApplied" else None)(
            condition(api, "team-b", "egf", "Ready") or {}))
        assert ready["status"] == "False"
        assert "serviceentries" in ready["message"], ready["message"]
        api.kubectl("apply", "-f", str(REPO / "deploy" / "controller-rbac.yaml"))
        wait_for("Ready after the rights came back", lambda: (
            condition(api, "team-b", "egf", "Ready") or {}).get("status") == "True", timeout=60)
        assert set(serviceentries(api)) == {"idp-fail.example.com"}
        api.kubectl("delete", "protectedhost", "-n", "team-b", "egf", "--timeout=30s")
        wait_for("entry gone", lambda: serviceentries(api) == {})
    finally:
        api.kubectl("apply", "-f", str(REPO / "deploy" / "controller-rbac.yaml"))
        eg.stop()
        api.kubectl("delete", "protectedhost", "-n", "team-b", "egf", "--ignore-not-found",
                    "--timeout=30s", check=False)
        ctl.start()


def test_render_egress_service_entries_valid(api, istio_validate, tmp_path):
    """render --egress-service-entries: one ServiceEntry per issuer host, accepted by Istio's
    validation and by the apiserver's CRD schema."""
    out = tmp_path / "out"
    subprocess.run([controller_path(), "render", "-f", str(REPO / "examples" / "echoserver.yaml"),
                    str(REPO / "controller" / "tests" / "data" / "egress.yaml"),
                    "--egress-service-entries", "-o", str(out)], check=True, timeout=60)
    entries = sorted(out.glob("serviceentry-*.yaml"))
    assert len(entries) == 2
    proc = subprocess.run([istio_validate, "policy", *map(str, entries)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for p in entries:
        api.kubectl("apply", "--dry-run=server", "-f", str(p))


def test_render_rejects_invalid(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(ph_manifest("bad", "x", ["Bad.example.com"]))
    proc = subprocess.run([controller_path(), "render", "-f", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{bad}:1: spec.hosts[0]" in proc.stderr
    assert proc.stdout == ""
