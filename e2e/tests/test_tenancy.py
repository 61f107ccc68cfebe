"""Many teams, one portcullis (README.md, "Multi-tenant clusters"): the cluster admin's
ProtectedHostPolicy says which namespace may protect which hosts, on which gateways, with which
issuers; kube-apiserver refuses what it does not allow at `kubectl apply`
(deploy/admission-policy.yaml), and the controller refuses it again when admission is absent.

Real: kube-apiserver with RBAC and static-token users (alice of team-a, bob of team-b, each
allowed to write ProtectedHosts in their own namespace only), the ValidatingAdmissionPolicies
as bootstrap prints them, portcullis-controller under its own RBAC, portcullis-authd watching
its config shards, istiod, the gateway Envoy it drives, oidc-provider and Chromium.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import pytest
import yaml

from e2e.harness.authd import WatchingAuthd
from e2e.harness.istio import (ISTIO_NS, MESH_DEFAULTS, RBAC, IngressGateway, Istiod, apply,
                               mesh_configmap, rule_strings, service_entry, shadow_rules)
from e2e.harness.kube import ApiServer
from e2e.harness.peers import DEFAULT_USERS, Browser, Echo, OidcProvider
from e2e.harness.proc import CONTROLLER, REPO, Proc, built, free_port, skip_e2e, wait_for

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

AUTHD_NS = "portcullis-system"
GW_B = "gateways-b"  # a gateway namespace of the controller's that team-a may not use
GATEWAY_NAMESPACES = f"{ISTIO_NS},{GW_B}"
USERS = {"alice": ["team-a-devs"], "bob": ["team-b-devs"]}
PASSWORDS = {u["username"]: u["password"] for u in DEFAULT_USERS}
ECHO_SERVICE = "echo.team-a.svc.cluster.local"
APP_HOST = "app.team-a.localhost"
SECRET = "app-client-secret"

TEAM_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: protectedhost-editor, namespace: {ns}}}
rules:
  - apiGroups: [portcullis.io]
    resources: [protectedhosts]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: protectedhost-editors, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: protectedhost-editor}}
subjects: [{{kind: Group, name: {group}, apiGroup: rbac.authorization.k8s.io}}]
"""

CONTROLLER_EXTRA_BINDINGS = f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: portcullis-controller-gateway-user, namespace: {GW_B}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller-gateway}}
subjects: [{{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: portcullis-controller-mesh-user, namespace: {ISTIO_NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller-mesh}}
subjects: [{{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}}]
"""


def policy(issuer: str, team_a_hosts=("*.team-a.localhost",)) -> dict:
    """team-a by name: its names on istio-system's gateways; team-b by its labels: wildcards
    too, on the gateways of gateways-b. One issuer for both."""
    return {
        "apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHostPolicy",
        "metadata": {"name": "portcullis"},
        "spec": {"rules": [
            {"namespaces": {"names": ["team-a"]}, "hosts": list(team_a_hosts),
             "gateways": [{"namespace": ISTIO_NS}], "issuers": [issuer]},
            {"namespaces": {"selector": {"matchLabels": {"portcullis.io/tenant": "b"}}},
             "hosts": ["*.team-b.localhost"], "allowWildcardHosts": True,
             "gateways": [{"namespace": GW_B}], "issuers": [issuer]},
        ]},
    }


def protected_host(name: str, ns: str, issuer: str, hosts=(APP_HOST,), gateway=None,
                   secret: bool = False) -> dict:
    spec = {"hosts": list(hosts), "oidc": {"issuerURL": issuer, "clientID": "app"},
            "access": {"allowedGroups": ["admins"]}}
    if gateway:
        spec["gateway"] = gateway
    if secret:
        spec["oidc"]["clientSecretRef"] = {"name": "app-oidc", "key": "client-secret"}
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


# What team-a must not do, each with the reason the controller gives it.
def refused_cases(issuer: str) -> list[tuple[str, dict, str]]:
    return [
        ("squat", protected_host("squat", "team-a", issuer, hosts=["app.team-b.localhost"]),
         "HostNotAllowed"),
        ("wildcard", protected_host("wildcard", "team-a", issuer, hosts=["*.x.team-a.localhost"]),
         "HostNotAllowed"),
        ("deputy", protected_host("deputy", "team-a", issuer, gateway={"namespace": GW_B}),
         "GatewayNotAllowed"),
        ("elsewhere", protected_host("elsewhere", "team-a", issuer,
                                     gateway={"namespace": "kube-system"}),
         "GatewayNotAllowed"),
        ("fetcher", protected_host("fetcher", "team-a", "https://idp.evil.example/realms/x"),
         "IssuerNotAllowed"),
        ("crumbs", {**protected_host("crumbs", "team-a", issuer),
                    "spec": {**protected_host("crumbs", "team-a", issuer)["spec"],
                             "session": {"cookieDomain": ".localhost"}}},
         "HostNotAllowed"),
    ]


def kjson(api, *args, kubeconfig=None):
    return json.loads(api.kubectl("get", "-o", "json", *args, kubeconfig=kubeconfig).stdout)


def condition(api, ns, name, ctype):
    obj = kjson(api, "protectedhost", "-n", ns, name)
    if obj["metadata"].get("generation") != obj.get("status", {}).get("observedGeneration"):
        return None
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == ctype), None)


def policies_of(api, owner_ns: str) -> list[str]:
    """Every AuthorizationPolicy in the cluster a ProtectedHost of owner_ns stands for."""
    items = kjson(api, "authorizationpolicies", "-A", "-l",
                  f"portcullis.io/owner-namespace={owner_ns}")["items"]
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items)


def authd_hosts(api) -> str:
    secs = kjson(api, "secret", "-n", AUTHD_NS, "-l", "portcullis.io/authd-config=shard")
    return "".join(base64.b64decode(s["data"]["hosts.yaml"]).decode() for s in secs["items"])


def render_refusal(env, doc: dict, tmp_path) -> tuple[int, str]:
    """render --policy over one ProtectedHost, as a GitOps pipeline runs it: the exit code
    and the message after "file:line: "."""
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump_all([
        env["policy"], {"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "team-b", "labels": {"portcullis.io/tenant": "b"}}}]))
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(doc))
    r = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "render", "-f",
                        str(tmp_path / "host.yaml"), "--policy", str(tmp_path / "policy.yaml"),
                        f"--gateway-namespaces={GATEWAY_NAMESPACES}",
                        "--allow-insecure-issuers"], capture_output=True, text=True, timeout=60)
    prefix = f"{tmp_path / 'host.yaml'}:1: "
    assert r.stderr.startswith(prefix) and r.stderr.count("\n") == 1, r.stderr
    return r.returncode, r.stderr[len(prefix):].rstrip("\n")


@pytest.fixture(scope="module")
def env():
    parts = []

    def start(part, **kw):
        parts.append(part)
        part.start(**kw)
        return part

    try:
        # First, and with room: node's start-up is slow on a busy machine.
        gw_port = free_port()
        idp = start(OidcProvider([{"clientId": "app", "secret": SECRET, "redirectUris": [
            f"http://{APP_HOST}:{gw_port}/oauth2/callback"]}]), timeout=90)
        api = start(ApiServer(users=USERS))
        api.install_istio_crds()
        api.kubectl("apply", "-f", str(REPO / "deploy" / "namespace.yaml"))
        for ns in (ISTIO_NS, GW_B, "team-a", "team-b"):
            api.kubectl("create", "namespace", ns)
        api.kubectl("label", "namespace", "team-b", "portcullis.io/tenant=b")
        api.kubectl("apply", "-f", str(REPO / "crds" / "protectedhost.yaml"),
                    "-f", str(REPO / "crds" / "protectedhostpolicy.yaml"))
        api.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/protectedhosts.portcullis.io", "crd/protectedhostpolicies.portcullis.io")
        # The install as bootstrap prints it for these gateway namespaces: the controller's
        # RBAC (a Role per gateway namespace) and the admission policies.
        docs = [d for d in yaml.safe_load_all(subprocess.run(
            [built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "bootstrap",
             f"--gateway-namespaces={GATEWAY_NAMESPACES}"], capture_output=True, text=True,
            check=True, timeout=30).stdout) if d]
        rbac = [d for d in docs if d["kind"] in ("ClusterRole", "Role")
                and d["metadata"]["name"].startswith("portcullis-controller")]
        admission = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]
        apply(api, *rbac, *admission)
        api.kubectl("apply", "-f", str(REPO / "deploy" / "authd-rbac.yaml"))
        api.bind_controller_user()
        api.kubectl("apply", "-f", "-", input=CONTROLLER_EXTRA_BINDINGS)
        for ns, group in (("team-a", "team-a-devs"), ("team-b", "team-b-devs")):
            api.kubectl("apply", "-f", "-", input=TEAM_RBAC.format(ns=ns, group=group))

        the_policy = policy(idp.issuer)
        apply(api, the_policy)
        apply(api, mesh_configmap({**MESH_DEFAULTS, "extensionProviders": []}))
        istiod = start(Istiod(api))
        metrics = free_port()
        ctl = start(Proc("controller", [
            built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run", "--kubeconfig",
            api.controller_kubeconfig, "--mesh-config=istio", "--leader-elect=false",
            "--allow-insecure-issuers", "--resync-period=0", "--log-level=debug",
            f"--gateway-namespaces={GATEWAY_NAMESPACES}", f"--metrics-addr=127.0.0.1:{metrics}"],
            log_path=api.workdir / "controller-tenancy.log"))
        ctl.wait_http(f"http://127.0.0.1:{metrics}/readyz", ok=lambda s: s == 200)
        authd = start(WatchingAuthd("tenancy", api.service_account_kubeconfig(
            AUTHD_NS, "portcullis-authd"), idp.issuer,
            cookie_secret=base64.b64encode(os.urandom(32)).decode()))
        echo = start(Echo())
        apply(api, service_entry("portcullis-authd", AUTHD_NS,
                                 f"portcullis-authd.{AUTHD_NS}.svc.cluster.local", 4180,
                                 authd.port))
        gateway = start(IngressGateway(istiod, echo, port=gw_port, upstream_host=ECHO_SERVICE))
        yield {"api": api, "idp": idp, "policy": the_policy, "gateway": gateway, "authd": authd,
               "echo": echo, "controller_log": api.workdir / "controller-tenancy.log"}
    finally:
        for part in reversed(parts):
            try:
                part.stop()
            except Exception:
                pass


def as_user(env, user: str, *args: str, input: str | None = None):
    return env["api"].kubectl(*args, input=input, check=False,
                              kubeconfig=env["api"].user_kubeconfig(user))


def apply_as(env, user: str, doc: dict):
    return as_user(env, user, "apply", "-f", "-", input=json.dumps(doc))


def set_admission(env, on: bool) -> None:
    """Binds (on) or unbinds the admission policies, as an admin who has not installed them."""
    api = env["api"]
    names = ("portcullis-gateway-namespaces", "portcullis-protectedhost-policy")
    if on:
        docs = [d for d in yaml.safe_load_all(subprocess.run(
            [built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "bootstrap",
             f"--gateway-namespaces={GATEWAY_NAMESPACES}"], capture_output=True, text=True,
            check=True, timeout=30).stdout) if d and d["kind"] == "ValidatingAdmissionPolicyBinding"]
        apply(api, *docs)
    else:
        api.kubectl("delete", "validatingadmissionpolicybinding", *names, "--ignore-not-found")


def gateway_checks(env) -> set[str]:
    rules = shadow_rules(env["gateway"].http_filter(RBAC))
    return set().union(*(rule_strings(r) for r in rules.values())) if rules else set()


# ---- who may write what -----------------------------------------------------------------------


def test_only_a_cluster_admin_writes_the_policy(env):
    r = apply_as(env, "alice", policy("https://mine.example.com"))
    assert r.returncode != 0 and "forbidden" in r.stderr, r.stderr
    assert as_user(env, "alice", "auth", "can-i", "patch",
                   "protectedhostpolicies.portcullis.io/portcullis").stdout.strip() == "no"
    assert as_user(env, "alice", "auth", "can-i", "create", "protectedhosts.portcullis.io",
                   "-n", "team-b").stdout.strip() == "no"


def test_admission_refuses_what_the_policy_does_not_allow(env, tmp_path):
    """Each refused by kube-apiserver with the message the controller and render give: the
    field, the rule, who can change it."""
    for name, doc, reason in refused_cases(env["idp"].issuer):
        rc, message = render_refusal(env, doc, tmp_path)
        assert rc == 1, message
        r = apply_as(env, "alice", doc)
        assert r.returncode != 0, f"{name}: admitted"
        assert "denied request: " in r.stderr, r.stderr
        assert f"{reason}: {message}" in r.stderr, f"{name}:\n{r.stderr}\nrender: {message}"
        assert "can change" in message
        assert env["api"].kubectl("get", "ph", "-n", "team-a", name,
                                  check=False).returncode != 0


def test_admission_lets_a_namespace_use_what_its_labels_give(env):
    """team-b by its labels: a wildcard host on its own gateway namespace."""
    doc = protected_host("wild", "team-b", env["idp"].issuer, hosts=["*.team-b.localhost"],
                         gateway={"namespace": GW_B})
    r = apply_as(env, "bob", doc)
    assert r.returncode == 0, r.stderr
    acc = wait_for("team-b/wild accepted", lambda: condition(env["api"], "team-b", "wild",
                                                             "Accepted"), timeout=30)
    assert acc["status"] == "True", acc
    assert wait_for("its policy in gateways-b", lambda: policies_of(env["api"], "team-b"),
                    timeout=30) == [f"{GW_B}/portcullis-team-b-wild"]
    env["api"].kubectl("delete", "ph", "-n", "team-b", "wild", "--timeout=30s")


def test_without_admission_the_controller_refuses_the_same(env):
    """Admission unbound (removed, or never installed): the same objects are stored, and each
    ends Accepted=False with its reason, with no AuthorizationPolicy and no authd entry. The
    squatter, older, takes nothing from team-b."""
    api = env["api"]
    cases = refused_cases(env["idp"].issuer)
    set_admission(env, False)
    try:
        for name, doc, _ in cases:
            r = wait_for(f"{name} stored", lambda doc=doc: (lambda r: r if r.returncode == 0
                                                             else None)(apply_as(env, "alice",
                                                                                 doc)),
                         timeout=30)
            assert r.returncode == 0
        time.sleep(1.1)  # creationTimestamp has one-second resolution: team-b's is newer
        owner = protected_host("owner", "team-b", env["idp"].issuer,
                               hosts=["app.team-b.localhost"], gateway={"namespace": GW_B})
        assert apply_as(env, "bob", owner).returncode == 0
        for name, _, reason in cases:
            acc = wait_for(f"{name} refused", lambda name=name: condition(api, "team-a", name,
                                                                          "Accepted"), timeout=30)
            assert acc["status"] == "False" and acc["reason"] == reason, acc
            ready = condition(api, "team-a", name, "Ready")
            assert ready["status"] == "False" and ready["reason"] == reason, ready
            assert "can change" in acc["message"]
        assert policies_of(api, "team-a") == []
        entries = authd_hosts(api)
        assert not any(f"team-a/{name}" in entries for name, _, _ in cases)
        acc = wait_for("team-b/owner accepted", lambda: condition(api, "team-b", "owner",
                                                                  "Accepted"), timeout=30)
        assert acc["status"] == "True", acc
        assert policies_of(api, "team-b") == [f"{GW_B}/portcullis-team-b-owner"]
    finally:
        for name, _, _ in cases:
            api.kubectl("delete", "ph", "-n", "team-a", name, "--ignore-not-found",
                        "--timeout=30s", check=False)
        api.kubectl("delete", "ph", "-n", "team-b", "owner", "--ignore-not-found",
                    "--timeout=30s", check=False)
        set_admission(env, True)


def test_a_permitted_host_goes_through_to_a_browser_login(env):
    api = env["api"]
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "app-oidc", "namespace": "team-a"},
              "stringData": {"client-secret": SECRET}}
    assert apply_as(env, "alice", secret).returncode == 0
    r = apply_as(env, "alice", protected_host("app", "team-a", env["idp"].issuer, secret=True))
    assert r.returncode == 0, r.stderr
    wait_for("Ready", lambda: (condition(api, "team-a", "app", "Ready") or {}).get("status")
             == "True", timeout=60)
    assert policies_of(api, "team-a") == [f"{ISTIO_NS}/portcullis-team-a-app"]
    # authd fetches only from the issuers the policy gives team-a.
    assert f"allowedURLPrefixes:\n    - {env['idp'].issuer}\n" in authd_hosts(api)
    wait_for("the gateway checks the host", lambda: APP_HOST in gateway_checks(env),
             timeout=60, ignore=(OSError, ValueError, KeyError))
    result = Browser().run([{"goto": f"http://{APP_HOST}:{env['gateway'].port}/"},
                            {"login": {"username": "alice", "password": PASSWORDS["alice"]}}],
                           check=False)
    assert result["ok"], result.get("error")
    assert result["status"] == 200 and "alice@example.com" in result["text"]
    seen = [q for q in env["echo"].requests if q["headers"].get("x-auth-request-email")]
    assert seen and seen[-1]["headers"]["x-auth-request-email"] == "alice@example.com"


def test_tightening_the_policy_withdraws_what_it_no_longer_allows(env):
    api = env["api"]
    assert condition(api, "team-a", "app", "Accepted")["status"] == "True"
    apply(api, policy(env["idp"].issuer, team_a_hosts=["*.elsewhere.localhost"]))
    acc = wait_for("team-a/app refused", lambda: (lambda c: c if c and c["status"] == "False"
                                                  else None)(condition(api, "team-a", "app",
                                                                       "Accepted")), timeout=30)
    assert acc["reason"] == "HostNotAllowed", acc
    assert f'"{APP_HOST}" is not within the hosts namespace team-a may protect' in acc["message"]
    wait_for("its AuthorizationPolicy gone", lambda: policies_of(api, "team-a") == [],
             timeout=30)
    wait_for("its authd entry gone", lambda: "team-a/app" not in authd_hosts(api), timeout=30)
    # Loosened again: it comes back without anyone touching the ProtectedHost.
    apply(api, env["policy"])
    wait_for("team-a/app Ready again", lambda: (condition(api, "team-a", "app", "Ready") or {})
             .get("status") == "True", timeout=60)
    assert policies_of(api, "team-a") == [f"{ISTIO_NS}/portcullis-team-a-app"]


def test_render_refuses_the_same_inputs(env, tmp_path):
    want = {
        "squat": 'spec.hosts[0]: "app.team-b.localhost" is not within the hosts namespace team-a '
                 "may protect (*.team-a.localhost)",
        "wildcard": 'spec.hosts[0]: "*.x.team-a.localhost" is a wildcard host, and no rule with '
                    "allowWildcardHosts: true lets namespace team-a protect it",
        "deputy": "spec.gateway: gateways-b pods istio=ingressgateway is not among the gateways "
                  "namespace team-a may attach to (istio-system (any))",
        "elsewhere": 'spec.gateway.namespace: "kube-system" is not a gateway namespace of '
                     "portcullis-controller (--gateway-namespaces: istio-system, gateways-b)",
        "fetcher": 'spec.oidc.issuerURL: "https://idp.evil.example/realms/x" is not within the '
                   f"issuers namespace team-a may use ({env['idp'].issuer})",
        "crumbs": 'spec.session.cookieDomain: ".localhost" sends the session cookie to localhost '
                  "and *.localhost, not all within the hosts namespace team-a may protect "
                  "(*.team-a.localhost)",
    }
    for name, doc, _ in refused_cases(env["idp"].issuer):
        rc, message = render_refusal(env, doc, tmp_path)
        assert rc == 1 and message.startswith(want[name]), (name, message)
    # What the policy allows renders, with authd's fetch limit in its entry.
    out = tmp_path / "out"
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(protected_host("app", "team-a",
                                                                     env["idp"].issuer)))
    r = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "render", "-f",
                        str(tmp_path / "app.yaml"), "--policy", str(tmp_path / "policy.yaml"),
                        "--allow-insecure-issuers", "-o", str(out)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (out / "authorizationpolicy-portcullis-team-a-app.yaml").exists()
    assert f"allowedURLPrefixes:\n        - {env['idp'].issuer}" in \
        (out / "authd-config-secrets.yaml").read_text()
