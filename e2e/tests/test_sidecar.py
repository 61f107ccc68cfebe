"""Sidecar mode (README.md "Sidecar mode"), proven with istiod and the controller: a
ProtectedHost with spec.workload protects an app's pods through the authd container in the
same pod — Istio's in-pod ext_authz pattern: the provider portcullis-local, whose service is
a local name that a ServiceEntry in the namespace resolves to 127.0.0.1:4180.

The pod is a network namespace the test creates: the app, authd on the pod's 127.0.0.1:4180
as deploy/components/sidecar runs it (--watch-config --config-secret, on a token of the pod's
ServiceAccount, which the component's Role lets read that one Secret), and Envoy bootstrapped
as the workload's sidecar, with the inbound redirect Istio's init container installs (nat
PREROUTING → 15006; outbound capture is not needed: the app calls nothing). istiod sees the pod
as a WorkloadEntry behind a ServiceEntry (the stand-in for its Service). The namespace's
PeerAuthentication is DISABLE: with Istio's default (PERMISSIVE) the inbound listener has a TLS
chain whose certificates only istio-agent serves (SDS). kube-apiserver listens on this
namespace's loopback, so the pod reaches it through a TCP forwarder pair (plumbing, like the
veth).

Everything else comes from the controller, running on its ServiceAccount's token with
deploy/'s RBAC and the component's RoleBinding in the app's namespace: the workload's policy,
the provider in the mesh config, the ServiceEntry, the namespace's config shard and its copy
of the revocation list that `portcullis-controller revoke` writes in portcullis-system (with
deploy/revoker-rbac.yaml's Role). Real: kube-apiserver, istiod, Envoy,
portcullis-controller, portcullis-authd, oidc-provider."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse

import pytest
import yaml

from e2e.harness.authd import idp_login, set_cookies
from e2e.harness.istio import (EXT_AUTHZ, MESH_DEFAULTS, RBAC, Istiod, Netns, Parts, Proxy,
                               apply, mesh_configmap, netns_cluster, rule_strings, shadow_rules)
from e2e.harness.peers import OidcProvider
from e2e.harness.proc import (AUTHD, CONTROLLER, REPO, Proc, built, free_port, http, skip_e2e,
                              wait_for, work_dir)

pytestmark = [
    pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the pod's network namespace"),
]

NS, OTHER, AUTHD_NS = "test-auth", "other-team", "portcullis-system"
APP_PORT, INBOUND = 8080, 15006
HOST = f"echo.{NS}.svc.cluster.local"
LOCAL = "portcullis-authd.portcullis.local"
POLICY = f"portcullis-{NS}-echo"
SHARD = "portcullis-authd-config-00"
REVOCATIONS = "portcullis-revocations"


def inbound_capture(netns: Netns, keep: list[int]) -> None:
    """Istio's istio-iptables inbound rules: every TCP connection into the pod goes to the
    sidecar's inbound port, except the ports in keep (here the admin ports the test reads)."""
    rules = [["-t", "nat", "-N", "ISTIO_INBOUND"], ["-t", "nat", "-N", "ISTIO_IN_REDIRECT"],
             ["-t", "nat", "-A", "ISTIO_IN_REDIRECT", "-p", "tcp", "-j", "REDIRECT",
              "--to-ports", str(INBOUND)],
             ["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"]]
    for port in (15008, 15090, 15021, 15020, *keep):
        rules.append(["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", str(port),
                      "-j", "RETURN"])
    rules.append(["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_IN_REDIRECT"])
    for r in rules:
        subprocess.run(["ip", "netns", "exec", netns.name, "iptables", *r], check=True,
                       capture_output=True, timeout=30)


def protected_host(issuer: str, name: str = "echo", hosts: tuple = (HOST, "*.wild.test")) -> dict:
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"workload": {"selector": {"matchLabels": {"app": name}}},
                     "hosts": list(hosts),
                     "oidc": {"issuerURL": issuer, "clientID": "echo",
                              "clientSecretRef": {"name": "echo-oidc", "key": "client-secret"}},
                     "access": {"allowedGroups": ["admins"]},
                     "paths": {"skip": ["/public/*"]}}}


def secret(ns: str, name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "stringData": data}


def apply_component_rbac(api, d) -> None:
    """deploy/components/sidecar's Roles in NS, as the app's kustomization builds them."""
    (d / "app").mkdir()
    (d / "app" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NS,
        "components": [os.path.relpath(REPO / "deploy" / "components" / "sidecar", d / "app")]}))
    built_yaml = subprocess.run(["kubectl", "kustomize", str(d / "app")], check=True,
                                capture_output=True, text=True, timeout=60).stdout
    api.kubectl("apply", "-f", "-", input=built_yaml)


def authd_argv() -> list[str]:
    """The container's args from the component, with what a pod gives it implicitly."""
    patch = yaml.safe_load((REPO / "deploy" / "components" / "sidecar" /
                            "authd-container.yaml").read_text())
    return patch["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.fixture(scope="module")
def pod():
    d = work_dir("sidecar")
    parts = Parts()
    start = parts.start
    try:
        netns, api = netns_cluster(parts, (NS, OTHER, AUTHD_NS, "istio-system"))
        api.kubectl("apply", "-f", str(REPO / "crds" / "protectedhost.yaml"))
        api.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/protectedhosts.portcullis.io")
        api.kubectl("apply", "-f", str(REPO / "deploy" / "controller-rbac.yaml"),
                    "-f", str(REPO / "deploy" / "controller-mesh-rbac.yaml"),
                    "-f", str(REPO / "deploy" / "controller-gateway-rbac.yaml"))
        api.kubectl("create", "serviceaccount", "default", "-n", NS)
        apply_component_rbac(api, d)
        # Who may revoke: deploy/revoker-rbac.yaml, bound as README says.
        api.kubectl("apply", "-f", str(REPO / "deploy" / "revoker-rbac.yaml"))
        revoker = api.bind_revoker(AUTHD_NS)
        idp = OidcProvider([{"clientId": "echo", "secret": "echo-secret",
                             "redirectUris": [f"http://{HOST}/oauth2/callback"]},
                            {"clientId": "other", "secret": "other-team-secret",
                             "redirectUris": ["http://other.example.com/oauth2/callback"]}],
                           port=free_port(netns.host_ip), issuer_host=netns.host_ip)
        idp.host = netns.host_ip
        start(idp)
        apply(api, mesh_configmap(MESH_DEFAULTS),
              secret(NS, "echo-oidc", {"client-secret": "echo-secret"}),
              secret(OTHER, "other-oidc", {"client-secret": "other-team-secret"}),
              {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
               "metadata": {"name": "other", "namespace": OTHER},
               "spec": {"hosts": ["other.example.com"],
                        "oidc": {"issuerURL": idp.issuer, "clientID": "other",
                                 "clientSecretRef": {"name": "other-oidc",
                                                     "key": "client-secret"}}}})
        # Istio's init container installs the inbound capture before any container starts:
        # a connection opened before it has no conntrack entry, so once the nat rules exist
        # its next inbound packet counts as new and goes to the sidecar's inbound port.
        authd_admin, admin = free_port(), free_port()
        inbound_capture(netns, keep=[authd_admin, admin])
        metrics = free_port()
        controller = start(Proc("controller", [
            built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run",
            f"--kubeconfig={api.service_account_kubeconfig(AUTHD_NS, 'portcullis-controller')}",
            "--mesh-config=istio", "--leader-elect=false", "--allow-insecure-issuers",
            f"--metrics-addr=127.0.0.1:{metrics}"], log_path=d / "controller.log"))
        controller.wait_http(f"http://127.0.0.1:{metrics}/readyz", ok=lambda s: s == 200)
        # The app: a static file server in the pod, with /public/ to skip.
        (d / "www" / "public").mkdir(parents=True)
        (d / "www" / "index.html").write_text("the app\n")
        (d / "www" / "public" / "logo.txt").write_text("public\n")
        start(Proc("app", ["ip", "netns", "exec", netns.name, sys.executable, "-m",
                           "http.server", str(APP_PORT), "--bind", netns.ip,
                           "--directory", d / "www"], log_path=d / "app.log"))
        # The apiserver as the pod sees it: its own 127.0.0.1:<port>, forwarded out.
        relay = free_port(netns.host_ip)
        start(Proc("apiserver-relay", [sys.executable, "-m", "e2e.harness.tcpfwd", netns.host_ip,
                                       str(relay), "127.0.0.1", str(api.port)],
                   cwd=REPO, log_path=d / "relay-out.log")).wait_port(relay, netns.host_ip)
        start(Proc("apiserver-in-pod", ["ip", "netns", "exec", netns.name, sys.executable, "-m",
                                        "e2e.harness.tcpfwd", "127.0.0.1", str(api.port),
                                        netns.host_ip, str(relay)],
                   cwd=REPO, log_path=d / "relay-in.log"))
        # authd, the pod's second container, on the pod's ServiceAccount token.
        (d / "cookie").write_text(os.urandom(24).hex())
        pod_kubeconfig = api.service_account_kubeconfig(NS, "default")
        args = [a for a in authd_argv() if not a.startswith(("--admin-listen",
                                                              "--cookie-secret-file"))]
        authd = start(Proc("authd", [
            "ip", "netns", "exec", netns.name, AUTHD, *args, "--allow-insecure-issuers",
            f"--admin-listen={netns.ip}:{authd_admin}", f"--cookie-secret-file={d / 'cookie'}",
            f"--kubeconfig={pod_kubeconfig}", f"--config-namespace={NS}", "--log-level=debug"],
            env={"POD_NAME": "echo-0"}, log_path=d / "authd.log"))
        authd.wait_http(f"http://{netns.ip}:{authd_admin}/readyz", ok=lambda s: s == 200)
        svc = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
               "metadata": {"name": "echo", "namespace": NS},
               "spec": {"hosts": [HOST], "location": "MESH_INTERNAL", "resolution": "STATIC",
                        "ports": [{"number": APP_PORT, "name": "http", "protocol": "HTTP"}],
                        "workloadSelector": {"labels": {"app": "echo"}}}}
        we = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
              "metadata": {"name": "echo-0", "namespace": NS},
              "spec": {"address": netns.ip, "labels": {"app": "echo"}}}
        plaintext = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                     "metadata": {"name": "plaintext", "namespace": NS},
                     "spec": {"mtls": {"mode": "DISABLE"}}}
        apply(api, svc, we, plaintext, protected_host(idp.issuer))
        istiod = start(Istiod(api, grpc_host=netns.host_ip))
        proxy = start(Proxy(istiod, "echo-0", {"app": "echo"}, namespace=NS, kind="sidecar",
                            ip=netns.ip, netns=netns.name, admin_port=admin))
        proxy.wait_listener(INBOUND, probe=lambda lst: EXT_AUTHZ in str(lst))
        yield {"api": api, "istiod": istiod, "proxy": proxy, "netns": netns, "authd": authd,
               "authd_admin": f"http://{netns.ip}:{authd_admin}", "idp": idp,
               "pod_kubeconfig": pod_kubeconfig, "controller": controller,
               "controller_readyz": f"http://127.0.0.1:{metrics}/readyz",
               "revoker": revoker}
    finally:
        parts.stop()


def get(pod, path: str = "/", host: str = HOST, cookies: dict | None = None,
        accept: str = "application/json"):
    headers = {"Host": host, "Accept": accept}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return http("GET", f"http://{pod['netns'].ip}:{APP_PORT}{path}", headers=headers)


def login(pod, user: str) -> dict:
    """The code flow through the pod's sidecar, as a browser on HOST does it: the session
    cookies."""
    status, headers, _ = get(pod, "/", accept="text/html")
    assert status == 302, status
    jar = {k: v for k, v in set_cookies(headers).items() if v}
    back = urllib.parse.urlsplit(idp_login(headers["Location"], user, f"{user}-password"))
    status, headers, body = get(pod, f"{back.path}?{back.query}", cookies=jar, accept="text/html")
    assert status == 302, (status, body[:300])
    jar.update({k: v for k, v in set_cookies(headers).items() if v})
    return {k: v for k, v in jar.items() if not k.startswith("_portcullis_csrf_")}


def inbound_filters(proxy: Proxy) -> list[dict]:
    """The HTTP filters of the inbound chains for the app's port."""
    out = []
    for chain in (proxy.listener(INBOUND) or {}).get("filter_chains", []):
        for f in chain.get("filters", []):
            if f.get("name") == "envoy.filters.network.http_connection_manager":
                out += f["typed_config"].get("http_filters", [])
    return out


def kube_json(api, *args) -> dict:
    return json.loads(api.kubectl(*args, "-o", "json").stdout)


def shard_text(api, ns: str, name: str) -> str:
    obj = kube_json(api, "-n", ns, "get", "secret", name)
    return base64.b64decode(obj["data"]["hosts.yaml"]).decode()


def exists(api, ns: str, kind: str, name: str) -> bool:
    r = api.kubectl("-n", ns, "get", kind, name, "--ignore-not-found", "-o", "name")
    return r.stdout.strip() != ""


def secret_data(api, ns: str, name: str) -> dict | None:
    """The Secret's data (base64 values), None when it does not exist."""
    r = api.kubectl("-n", ns, "get", "secret", name, "-o", "json", check=False)
    return (json.loads(r.stdout).get("data") or {}) if r.returncode == 0 else None


def revoked(data: dict | None) -> set:
    text = base64.b64decode((data or {}).get("revocations.yaml", "")).decode()
    return {e["user"] for e in (yaml.safe_load(text) or {}).get("revocations") or []}


def copy_is_central(api) -> bool:
    """The namespace's copy holds the central list's bytes exactly."""
    central, copy = secret_data(api, AUTHD_NS, REVOCATIONS), secret_data(api, NS, REVOCATIONS)
    return copy is not None and copy.get("revocations.yaml", "") == \
        (central or {}).get("revocations.yaml", "")


def revoke(pod, user: str) -> str:
    """`portcullis-controller revoke` with the revoker's RBAC, as an operator runs it."""
    out = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "revoke",
                          f"--kubeconfig={pod['revoker']}", "--user", user],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def ready_condition(api, name: str = "echo") -> dict:
    ph = kube_json(api, "-n", NS, "get", "protectedhost", name)
    return {c["type"]: c for c in ph.get("status", {}).get("conditions", [])}.get("Ready", {})


def browser_status(pod, cookies: dict) -> int:
    return get(pod, cookies=cookies, accept="text/html")[0]


def decisions(pod) -> float:
    _, _, body = http("GET", f"{pod['authd_admin']}/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith("portcullis_authd_decisions_total"))


def test_the_controller_renders_the_workload_policy_and_istiod_puts_it_on_the_sidecar(pod):
    api = pod["api"]
    policy = kube_json(api, "-n", NS, "get", "authorizationpolicy", POLICY)
    assert policy["spec"]["provider"] == {"name": "portcullis-local"}
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "echo"}}
    assert policy["spec"]["rules"] == [{"to": [{"operation": {"notPaths": ["/public/*"]}}]}]
    mesh = yaml.safe_load(kube_json(api, "-n", "istio-system", "get", "configmap",
                                    "istio")["data"]["mesh"])
    local = [p for p in mesh["extensionProviders"] if p["name"] == "portcullis-local"]
    assert local and local[0]["envoyExtAuthzHttp"]["service"] == LOCAL
    se = kube_json(api, "-n", NS, "get", "serviceentry", "portcullis-authd-local")
    assert se["spec"]["endpoints"] == [{"address": "127.0.0.1"}]
    filters = inbound_filters(pod["proxy"])
    authz = [f["typed_config"] for f in filters if f["name"] == EXT_AUTHZ]
    assert authz and all(a["http_service"]["server_uri"]["cluster"] ==
                         f"outbound|4180||{LOCAL}" for a in authz), authz
    rules = shadow_rules([f["typed_config"] for f in filters if f["name"] == RBAC])
    assert rules and all("/public/" in rule_strings(r) for r in rules.values()), rules
    assert pod["istiod"].xds_rejects() == 0


def test_ready_once_the_sidecar_reports_its_shard(pod):
    api = pod["api"]

    def ready():
        ph = kube_json(api, "-n", NS, "get", "protectedhost", "echo")
        conds = {c["type"]: c for c in ph.get("status", {}).get("conditions", [])}
        return conds.get("Ready", {}).get("status") == "True" and conds["Ready"]
    cond = wait_for("the sidecar ProtectedHost to be Ready", ready)
    assert f"{NS}/{POLICY}" in cond["message"]
    lease = kube_json(api, "-n", NS, "get", "lease", "portcullis-authd-echo-0")
    assert "00=" in lease["metadata"]["annotations"]["portcullis.io/loaded"]


def test_login_through_the_sidecar_and_access_rules(pod):
    status, headers, body = get(pod)
    assert status == 401, body[:300]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    alice = login(pod, "alice")
    status, _, body = get(pod, cookies=alice, accept="text/html")
    assert status == 200 and body == b"the app\n"
    bob = login(pod, "bob")
    assert get(pod, cookies=bob, accept="text/html")[0] == 403


def test_any_host_reaches_the_check(pod):
    """No host condition on a workload's policy: Hosts authd does not protect are refused,
    and a wildcard host with a port or a trailing dot is checked (no EnvoyFilter needed)."""
    assert get(pod, host=f"{pod['netns'].ip}:{APP_PORT}")[0] == 403
    assert get(pod, host="a.wild.test:8443")[0] == 401
    assert get(pod, host=f"{HOST}.")[0] != 200
    assert not kube_json(pod["api"], "-n", NS, "get", "envoyfilters")["items"]


def test_skipped_paths_reach_the_app_without_a_check(pod):
    before = decisions(pod)
    status, _, body = get(pod, "/public/logo.txt")
    assert status == 200 and body == b"public\n"
    assert decisions(pod) == before
    assert get(pod, "/")[0] == 401 and decisions(pod) == before + 1


def test_namespaces_keep_their_client_secrets(pod):
    """The namespace's shard holds its own entry only; the central shards never hold it; the
    pod's ServiceAccount reads its shard and no other Secret, here or elsewhere."""
    api = pod["api"]
    mine = shard_text(api, NS, SHARD)
    assert "echo-secret" in mine and "other-team-secret" not in mine and f"{OTHER}/" not in mine
    central = "".join(shard_text(api, AUTHD_NS, f"portcullis-authd-config-{s:02x}")
                      for s in range(16))
    assert "other-team-secret" in central and "echo-secret" not in central
    as_pod = pod["pod_kubeconfig"]
    ok = api.kubectl("-n", NS, "get", "secret", SHARD, kubeconfig=as_pod, check=False)
    assert ok.returncode == 0, ok.stderr
    for args in (("-n", OTHER, "get", "secret", "other-oidc"),
                 ("-n", NS, "get", "secret", "echo-oidc"),
                 ("-n", AUTHD_NS, "get", "secret", "portcullis-authd-config-00"),
                 ("-n", NS, "get", "secrets")):
        r = api.kubectl(*args, kubeconfig=as_pod, check=False)
        assert r.returncode != 0 and "forbidden" in r.stderr.lower(), (args, r.stdout)


def test_the_namespace_holds_a_copy_of_the_revocation_list(pod):
    api = pod["api"]
    wait_for("the namespace's copy of the revocation list", lambda: copy_is_central(api))
    copy = kube_json(api, "-n", NS, "get", "secret", REVOCATIONS)["metadata"]
    assert copy["labels"]["portcullis.io/authd-config"] == "revocations"
    assert copy["annotations"]["portcullis.io/copy-of"] == f"{AUTHD_NS}/{REVOCATIONS}"
    r = api.kubectl("-n", NS, "get", "secret", REVOCATIONS, kubeconfig=pod["pod_kubeconfig"],
                    check=False)
    assert r.returncode == 0, r.stderr  # the sidecar's Role reads it


def test_revoke_ends_the_session_at_the_sidecar(pod):
    """`revoke` writes the central list only; the controller copies it into the namespace and
    the sidecar authd refuses the session, while another user's stays in."""
    api = pod["api"]
    alice, carol = login(pod, "alice"), login(pod, "carol")
    assert browser_status(pod, alice) == 200 and browser_status(pod, carol) == 200
    offset = pod["authd"].log_path.stat().st_size
    assert "on every host" in revoke(pod, "alice@example.com")
    wait_for("alice's session refused by the sidecar", lambda: browser_status(pod, alice) == 302)
    status, headers, _ = get(pod, cookies=alice, accept="text/html")
    assert status == 302 and headers["Location"].startswith(pod["idp"].issuer)
    assert get(pod, cookies=alice)[0] == 401  # an API client
    assert browser_status(pod, carol) == 200
    assert revoked(secret_data(api, NS, REVOCATIONS)) == {"alice@example.com"}
    assert copy_is_central(api)
    with open(pod["authd"].log_path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        assert "event=session_revoked" in f.read()
    pod["alice"] = alice


def test_a_copy_changed_or_deleted_by_hand_is_written_again(pod):
    """The copy holds the central list exactly: a stale copy (alice's entry gone, another
    added) is replaced, nothing of it merged; a deleted one comes back."""
    api, alice = pod["api"], pod["alice"]
    apply(api, secret(NS, REVOCATIONS, {"revocations.yaml": (
        "revocations:\n  - {user: mallory@example.com, notBefore: \"2026-01-01T00:00:00Z\"}\n")}))
    wait_for("the central list back in the copy, nothing merged",
             lambda: revoked(secret_data(api, NS, REVOCATIONS)) == {"alice@example.com"})
    assert copy_is_central(api)
    wait_for("alice refused", lambda: browser_status(pod, alice) == 302)
    api.kubectl("-n", NS, "delete", "secret", REVOCATIONS)
    wait_for("the copy back", lambda: copy_is_central(api))
    wait_for("alice refused", lambda: browser_status(pod, alice) == 302)


def test_a_namespace_that_refuses_the_copy_says_so(pod):
    """Without the component's Role for the copy, the host says Ready=False naming the
    refused write and the fix; with it back, the copy follows."""
    api = pod["api"]
    bob = login(pod, "bob")
    assert browser_status(pod, bob) == 403  # not in admins
    role = kube_json(api, "-n", NS, "get", "role", "portcullis-controller-sidecar")
    for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(k, None)
    narrowed = json.loads(json.dumps(role))
    for rule in narrowed["rules"]:
        if REVOCATIONS in rule.get("resourceNames", []):
            rule["resourceNames"].remove(REVOCATIONS)
    api.kubectl("replace", "-f", "-", input=json.dumps(narrowed))
    try:
        revoke(pod, "bob@example.com")
        cond = wait_for("Ready=False naming the refused copy", lambda: (
            lambda c: c if c.get("status") == "False" and REVOCATIONS in c.get("message", "")
            else None)(ready_condition(api)))
        assert cond["reason"] == "ApplyFailed", cond
        assert f"revocation list {NS}/{REVOCATIONS}" in cond["message"], cond
        assert "deploy/components/sidecar" in cond["message"], cond
        assert "bob@example.com" not in revoked(secret_data(api, NS, REVOCATIONS))
        assert browser_status(pod, bob) == 403  # the copy could not follow yet
    finally:
        api.kubectl("replace", "-f", "-", input=json.dumps(role))
    wait_for("the copy written once allowed", lambda: copy_is_central(api), timeout=90)
    wait_for("bob refused", lambda: browser_status(pod, bob) == 302)
    wait_for("Ready again", lambda: ready_condition(api).get("status") == "True", timeout=90)


def test_deleting_the_protected_host_unprotects_and_cleans_up(pod):
    api, proxy = pod["api"], pod["proxy"]
    api.kubectl("-n", NS, "delete", "protectedhost", "echo", "--timeout=60s")
    wait_for("istiod to take the check off the sidecar",
             lambda: not [f for f in inbound_filters(proxy) if f["name"] == EXT_AUTHZ],
             ignore=(OSError, ValueError))
    status, _, body = get(pod)
    assert status == 200 and body == b"the app\n"
    for kind, name in (("authorizationpolicy", POLICY), ("secret", SHARD),
                       ("secret", REVOCATIONS), ("serviceentry", "portcullis-authd-local")):
        r = api.kubectl("-n", NS, "get", kind, name, "--ignore-not-found", "-o", "name")
        assert r.stdout.strip() == "", (kind, r.stdout)

    def local_gone():
        mesh = yaml.safe_load(kube_json(api, "-n", "istio-system", "get", "configmap",
                                        "istio")["data"]["mesh"])
        return all(p["name"] != "portcullis-local" for p in mesh["extensionProviders"])
    wait_for("the controller to drop the portcullis-local provider", local_gone)


def test_a_namespace_gaining_its_first_host_gets_what_was_revoked_before(pod):
    api = pod["api"]
    apply(api, protected_host(pod["idp"].issuer))
    wait_for("the copy", lambda: copy_is_central(api))
    assert revoked(secret_data(api, NS, REVOCATIONS)) == {"alice@example.com", "bob@example.com"}
    wait_for("Ready", lambda: ready_condition(api).get("status") == "True")
    wait_for("alice refused", lambda: browser_status(pod, pod["alice"]) == 302)


def test_a_restarted_controller_removes_what_hosts_deleted_meanwhile_left(pod):
    """ProtectedHosts deleted while no controller runs (their finalizer taken off by hand):
    once it runs again, their policies in the app's namespace go, and with the namespace's
    last sidecar host its shard, its copy of the revocation list and the ServiceEntry."""
    api, ctl, issuer = pod["api"], pod["controller"], pod["idp"].issuer
    other_host, other_policy = f"echo2.{NS}.svc.cluster.local", f"portcullis-{NS}-echo2"
    apply(api, protected_host(issuer), protected_host(issuer, "echo2", (other_host,)))
    wait_for("both policies", lambda: exists(api, NS, "authorizationpolicy", POLICY) and
             exists(api, NS, "authorizationpolicy", other_policy))

    def deleted_while_down(name: str) -> None:
        ctl.stop()
        api.kubectl("-n", NS, "delete", "protectedhost", name, "--wait=false")
        api.kubectl("-n", NS, "patch", "protectedhost", name, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
        wait_for(f"{name} gone", lambda: not exists(api, NS, "protectedhost", name))
        ctl.start()
        ctl.wait_http(pod["controller_readyz"], ok=lambda s: s == 200)

    deleted_while_down("echo")
    wait_for("echo's policy removed", lambda: not exists(api, NS, "authorizationpolicy", POLICY))
    wait_for("the shard without echo's entry", lambda: HOST not in shard_text(api, NS, SHARD))
    assert other_host in shard_text(api, NS, SHARD)
    assert exists(api, NS, "authorizationpolicy", other_policy)

    deleted_while_down("echo2")
    left = (("authorizationpolicy", other_policy), ("secret", SHARD), ("secret", REVOCATIONS),
            ("serviceentry", "portcullis-authd-local"))
    wait_for("every sidecar object removed",
             lambda: not any(exists(api, NS, kind, name) for kind, name in left))
    assert exists(api, AUTHD_NS, "secret", REVOCATIONS)  # never the central list
