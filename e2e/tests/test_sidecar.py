"""The auth sidecar (docs/design.md "auth sidecar"), proven with istiod: a CUSTOM policy that
selects a workload's pods sends every request to that workload through the authd container in
the same pod — Istio's in-pod ext_authz pattern: a provider whose service is a local name
(`portcullis-authd.local`, a ServiceEntry with the endpoint 127.0.0.1:4180).

The pod is a network namespace the test creates: the app, authd on 127.0.0.1:4180, and Envoy
bootstrapped as the workload's sidecar, with the inbound redirect Istio's init container
installs (nat PREROUTING → 15006; outbound capture is not needed: the app calls nothing).
istiod sees the pod as a WorkloadEntry at the namespace's address behind a ServiceEntry.
The namespace's PeerAuthentication is DISABLE: with Istio's default (PERMISSIVE) the inbound
listener has a TLS chain whose certificates only istio-agent serves (SDS), and Envoy never
becomes ready without one.

The controller does not render this policy yet (no `spec.workload`); the test writes it the
way the controller renders a gateway's, with the workload's selector, the local provider and
no host restriction (every request to the pod is checked; authd refuses hosts it does not
know). Real: kube-apiserver, istiod, Envoy, portcullis-authd, oidc-provider."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from e2e.harness.authd import MESH_PROVIDER
from e2e.harness.istio import (EXT_AUTHZ, MESH_DEFAULTS, RBAC, Istiod, Netns, Parts, Proxy,
                               apply, mesh_configmap, netns_cluster, rule_strings, service_entry,
                               shadow_rules)
from e2e.harness.peers import OidcProvider
from e2e.harness.proc import AUTHD, Proc, free_port, http, skip_e2e, wait_for, work_dir

pytestmark = [
    pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the pod's network namespace"),
]

NS, APP_PORT, INBOUND = "test-auth", 8080, 15006
HOST = f"echo.{NS}.svc.cluster.local"
LOCAL = "portcullis-authd.local"


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


def workload_policy(not_paths: list[str]) -> dict:
    return {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "portcullis-test-auth-echo", "namespace": NS},
        "spec": {"action": "CUSTOM", "provider": {"name": "portcullis-local"},
                 "selector": {"matchLabels": {"app": "echo"}},
                 "rules": [{"to": [{"operation": {"notPaths": not_paths}}]}]},
    }


@pytest.fixture(scope="module")
def pod():
    d = work_dir("sidecar")
    parts = Parts()
    start = parts.start
    try:
        netns, api = netns_cluster(parts, (NS, "istio-system"))
        idp = OidcProvider([{"clientId": "echo", "secret": "echo-secret",
                             "redirectUris": [f"http://{HOST}/oauth2/callback"]}],
                           port=free_port(netns.host_ip), issuer_host=netns.host_ip)
        idp.host = netns.host_ip
        start(idp)
        # The app: a static file server in the pod, with /public/ to skip.
        (d / "www" / "public").mkdir(parents=True)
        (d / "www" / "index.html").write_text("the app\n")
        (d / "www" / "public" / "logo.txt").write_text("public\n")
        app = start(Proc("app", ["ip", "netns", "exec", netns.name, sys.executable, "-m",
                                 "http.server", str(APP_PORT), "--bind", netns.ip,
                                 "--directory", d / "www"], log_path=d / "app.log"))
        # authd, the pod's second container, on the pod's loopback.
        (d / "cookie").write_text(os.urandom(24).hex())
        (d / "config.yaml").write_text(yaml.safe_dump({"hosts": [{
            "id": f"{NS}/echo", "hosts": [HOST],
            "oidc": {"issuerURL": idp.issuer, "clientID": "echo", "clientSecret": "echo-secret"},
            "paths": {"skip": ["/public/*"]}}]}))
        authd_admin = free_port()
        authd = start(Proc("authd", ["ip", "netns", "exec", netns.name, AUTHD,
                                     f"--config={d / 'config.yaml'}", "--allow-insecure-issuers",
                                     "--listen=127.0.0.1:4180",
                                     f"--admin-listen={netns.ip}:{authd_admin}",
                                     f"--cookie-secret-file={d / 'cookie'}"],
                           log_path=d / "authd.log"))
        authd.wait_http(f"http://{netns.ip}:{authd_admin}/readyz", ok=lambda s: s == 200)
        admin = free_port()
        inbound_capture(netns, keep=[authd_admin, admin])
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
        provider = {"name": "portcullis-local",
                    "envoyExtAuthzHttp": {"service": LOCAL, "port": 4180, **MESH_PROVIDER}}
        apply(api, mesh_configmap({**MESH_DEFAULTS, "extensionProviders": [provider]}),
              service_entry("portcullis-authd-local", NS, LOCAL, 4180, 4180),
              svc, we, plaintext, workload_policy(["/public/*"]))
        istiod = start(Istiod(api, grpc_host=netns.host_ip))
        proxy = start(Proxy(istiod, "echo-0", {"app": "echo"}, namespace=NS, kind="sidecar",
                            ip=netns.ip, netns=netns.name, admin_port=admin))
        proxy.wait_listener(INBOUND, probe=lambda lst: EXT_AUTHZ in str(lst))
        yield {"api": api, "istiod": istiod, "proxy": proxy, "netns": netns, "authd": authd}
    finally:
        parts.stop()


def get(pod, path: str = "/", host: str = HOST):
    return http("GET", f"http://{pod['netns'].ip}:{APP_PORT}{path}",
                headers={"Host": host, "Accept": "application/json"})


def inbound_filters(proxy: Proxy) -> list[dict]:
    """The HTTP filters of the inbound chains for the app's port."""
    out = []
    for chain in (proxy.listener(INBOUND) or {}).get("filter_chains", []):
        for f in chain.get("filters", []):
            if f.get("name") == "envoy.filters.network.http_connection_manager":
                out += f["typed_config"].get("http_filters", [])
    return out


def test_istiod_puts_the_local_check_on_the_sidecars_inbound(pod):
    filters = inbound_filters(pod["proxy"])
    authz = [f["typed_config"] for f in filters if f["name"] == EXT_AUTHZ]
    assert authz and all(a["http_service"]["server_uri"]["cluster"] ==
                         f"outbound|4180||{LOCAL}" for a in authz), authz
    rules = shadow_rules([f["typed_config"] for f in filters if f["name"] == RBAC])
    assert rules and all("/public/" in rule_strings(r) for r in rules.values()), rules
    assert pod["istiod"].xds_rejects() == 0


def test_requests_to_the_pod_go_through_its_authd(pod):
    status, headers, body = get(pod)
    assert status == 401, body[:300]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    # Any Host reaches the same check: authd refuses one it does not protect.
    assert get(pod, host=f"{pod['netns'].ip}:{APP_PORT}")[0] == 403


def test_skipped_paths_reach_the_app_unchecked(pod):
    status, _, body = get(pod, "/public/logo.txt")
    assert status == 200 and body == b"public\n"


def test_without_the_policy_the_pod_is_open(pod):
    """Control: the check comes from the policy, not from the redirect."""
    api, proxy = pod["api"], pod["proxy"]
    api.kubectl("-n", NS, "delete", "authorizationpolicy", "portcullis-test-auth-echo")
    wait_for("istiod to take the check off the sidecar",
             lambda: not [f for f in inbound_filters(proxy) if f["name"] == EXT_AUTHZ],
             ignore=(OSError, ValueError))
    status, _, body = get(pod)
    assert status == 200 and body == b"the app\n"
    apply(api, workload_policy(["/public/*"]))
    wait_for("istiod to put it back",
             lambda: [f for f in inbound_filters(proxy) if f["name"] == EXT_AUTHZ],
             ignore=(OSError, ValueError))
    assert get(pod)[0] == 401
