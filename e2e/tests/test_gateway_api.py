"""A ProtectedHost on a Kubernetes Gateway API gateway (`spec.gateway.name`): the controller
renders an AuthorizationPolicy that attaches to the Gateway with targetRefs, and a real
istiod (Gateway API CRDs from the sigs.k8s.io/gateway-api module it links) turns it into the
ext_authz check of the Envoy bootstrapped as that Gateway's proxy.

Istio gives Gateway API listeners no bind address (0.0.0.0), so the gateway Envoy runs in a
network namespace the test creates; istiod, authd and the echo app listen on the host side
of its veth pair. Real: kube-apiserver, istiod, Envoy, portcullis-controller (render),
portcullis-authd, oidc-provider."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from e2e.harness.istio import (EXT_AUTHZ, MESH_DEFAULTS, RBAC, Istiod, Parts, Proxy, apply,
                               mesh_configmap, netns_cluster, rule_strings, service_entry,
                               shadow_rules)
from e2e.harness.peers import Echo, OidcProvider
from e2e.harness.proc import AUTHD, CONTROLLER, Proc, free_port, http, skip_e2e, wait_for, work_dir

pytestmark = [
    pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the gateway's network namespace"),
]

HOST = "app.gwapi.localhost"
WILD = "*.wild.gwapi.localhost"
GW_NS, GW_NAME, GW_PORT = "istio-ingress", "public", 8080
GW_LABELS = {"gateway.networking.k8s.io/gateway-name": GW_NAME}


def protected_host(issuer: str) -> dict:
    return {
        "apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
        "metadata": {"name": "app", "namespace": "test-auth"},
        "spec": {"hosts": [HOST, WILD], "gateway": {"namespace": GW_NS, "name": GW_NAME},
                 "oidc": {"issuerURL": issuer, "clientID": "app",
                          "clientSecretRef": {"name": "app-oidc", "key": "client-secret"}},
                 "paths": {"skip": ["/public/*"]}},
    }


def gateway_api_objects(echo_host: str) -> list[dict]:
    """The Gateway (bound to a Service of ours, so istiod deploys nothing), that Service, and
    an HTTPRoute to the echo app's ServiceEntry host."""
    svc = f"{GW_NAME}-gateway"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": GW_NS},
         "spec": {"selector": GW_LABELS, "ports": [{"name": "http", "port": GW_PORT,
                                                     "targetPort": GW_PORT}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": GW_NAME, "namespace": GW_NS},
         "spec": {"gatewayClassName": "istio",
                  "addresses": [{"type": "Hostname", "value": f"{svc}.{GW_NS}.svc.cluster.local"}],
                  "listeners": [{"name": "http", "port": GW_PORT, "protocol": "HTTP",
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "echo", "namespace": GW_NS},
         "spec": {"parentRefs": [{"name": GW_NAME}],
                  "rules": [{"backendRefs": [{"group": "networking.istio.io", "kind": "Hostname",
                                              "name": echo_host, "port": 80}]}]}},
    ]


@pytest.fixture(scope="module")
def env():
    d = work_dir("gwapi")
    parts = Parts()
    start = parts.start
    try:
        netns, api = netns_cluster(parts, (GW_NS, "portcullis-system", "test-auth", "istio-system"),
                                   gateway_api=True)
        idp = start(OidcProvider([{"clientId": "app", "secret": "app-secret",
                                   "redirectUris": [f"http://{HOST}/oauth2/callback"]}]))
        # What the controller renders for the ProtectedHost, offline.
        (d / "ph.yaml").write_text(yaml.safe_dump(protected_host(idp.issuer)))
        (d / "secret").write_text("app-secret")
        out = d / "rendered"
        r = subprocess.run([str(CONTROLLER), "render", "-f", str(d / "ph.yaml"), "-o", str(out),
                            "--allow-insecure-issuers", f"--gateway-namespaces={GW_NS}",
                            "--secret-file", f"test-auth/app-oidc/client-secret={d / 'secret'}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        policy = yaml.safe_load(next(out.glob("authorizationpolicy-*.yaml")).read_text())
        host_filter = yaml.safe_load(next(out.glob("envoyfilter-*.yaml")).read_text())
        provider = yaml.safe_load((out / "mesh-config.yaml").read_text())["extensionProviders"]
        hosts = [h for shard in yaml.safe_load_all((out / "authd-config-secrets.yaml").read_text())
                 for h in yaml.safe_load(shard["stringData"]["hosts.yaml"])["hosts"]]
        (d / "config.yaml").write_text(yaml.safe_dump({"hosts": hosts}))
        (d / "cookie").write_text(os.urandom(24).hex())
        authd_port, authd_admin = free_port(netns.host_ip), free_port()
        authd = start(Proc("authd", [AUTHD, f"--config={d / 'config.yaml'}",
                                     "--allow-insecure-issuers",
                                     f"--listen={netns.host_ip}:{authd_port}",
                                     f"--admin-listen=127.0.0.1:{authd_admin}",
                                     f"--cookie-secret-file={d / 'cookie'}"],
                           log_path=d / "authd.log"))
        authd.wait_http(f"http://127.0.0.1:{authd_admin}/readyz", ok=lambda s: s == 200)
        echo = start(Echo(host=netns.host_ip))
        svc = provider[0]["envoyExtAuthzHttp"]
        apply(api, mesh_configmap({**MESH_DEFAULTS, "extensionProviders": provider}),
              service_entry("portcullis-authd", "portcullis-system", svc["service"], svc["port"],
                            authd_port, address=netns.host_ip),
              service_entry("echo", GW_NS, "echo.gwapi.internal", 80, echo.port,
                            address=netns.host_ip),
              *gateway_api_objects("echo.gwapi.internal"), host_filter, policy)
        istiod = start(Istiod(api, grpc_host=netns.host_ip))
        proxy = start(Proxy(istiod, f"{GW_NAME}-gateway-0", GW_LABELS, namespace=GW_NS,
                            ip=netns.ip, netns=netns.name))
        proxy.wait_listener(GW_PORT, probe=lambda lst: any(
            f["name"] == EXT_AUTHZ for f in proxy.http_filters(GW_PORT)) and strips_ports(lst))
        yield {"api": api, "istiod": istiod, "proxy": proxy, "policy": policy, "netns": netns,
               "echo": echo, "authd": authd}
    finally:
        parts.stop()


def strips_ports(listener: dict) -> bool:
    from e2e.harness.istio import HCM
    return any(f["name"] == HCM and f["typed_config"].get("strip_any_host_port")
               for c in listener.get("filter_chains", []) for f in c.get("filters", []))


def get(env, host: str, path: str = "/"):
    return http("GET", f"http://{env['netns'].ip}:{GW_PORT}{path}",
                headers={"Host": host, "Accept": "application/json"})


def test_rendered_policy_attaches_to_the_gateway_with_target_refs(env):
    spec = env["policy"]["spec"]
    assert env["policy"]["metadata"]["namespace"] == GW_NS
    assert spec["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": GW_NAME}]
    assert "selector" not in spec
    rules = shadow_rules(env["proxy"].http_filter(GW_PORT, RBAC))
    assert len(rules) == 1, rules
    assert {HOST, f"{HOST}:", "/public/"} <= rule_strings(next(iter(rules.values())))
    assert env["istiod"].xds_rejects() == 0


def test_the_gateway_sends_the_host_through_authd(env):
    status, headers, body = get(env, HOST)
    assert status == 401, body[:300]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert not [r for r in env["echo"].requests if r["path"] == "/"]


def test_a_wildcard_host_is_checked_with_any_port(env):
    """The rendered EnvoyFilter attaches to the Gateway by targetRefs too: its proxy strips the
    port, so `*.wild...` (a suffix match) also checks `a.wild...:8080`."""
    for host in ("a.wild.gwapi.localhost", "a.wild.gwapi.localhost:8080",
                 "A.wild.gwapi.localhost.:1", f"{HOST}.:8080"):
        status, _, body = get(env, host)
        assert status == 401, (host, body[:300])
    assert not [r for r in env["echo"].requests if r["path"] == "/"]
    assert get(env, "other.gwapi.localhost:8080")[0] == 200


def test_skipped_paths_and_other_hosts_reach_the_app(env):
    status, _, body = get(env, HOST, "/public/x")
    assert status == 200 and json.loads(body)["path"] == "/public/x"
    assert get(env, "other.gwapi.localhost")[0] == 200


def test_the_same_policy_with_a_selector_does_not_reach_this_gateway(env):
    """Control: the Gateway's proxy is picked by targetRefs, not by the legacy selector."""
    api, policy = env["api"], json.loads(json.dumps(env["policy"]))
    policy["spec"].pop("targetRefs")
    policy["spec"]["selector"] = {"matchLabels": {"istio": "ingressgateway"}}
    apply(api, policy)
    proxy = env["proxy"]
    wait_for("istiod to take the check off the Gateway's proxy",
             lambda: not proxy.http_filter(GW_PORT, EXT_AUTHZ), ignore=(OSError, ValueError))
    assert get(env, HOST)[0] == 200
    apply(api, env["policy"])
    wait_for("istiod to put it back", lambda: proxy.http_filter(GW_PORT, EXT_AUTHZ),
             ignore=(OSError, ValueError))
    assert get(env, HOST)[0] == 401
