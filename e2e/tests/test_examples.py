"""Every example is exercised: the GitOps directory is rendered and compared with what is
committed, everything the renderer produces for examples/ passes Istio's own validation
(a real istio.io/istio build) and authd's own config check, and a real istiod turns all of
it into one gateway Envoy's checks (every host checked, skipped paths and other hosts not)."""

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


@pytest.fixture(scope="module")
def example_gateway(tmp_path_factory):
    """Every rendered example applied to a real istiod (the session's mesh), its provider's
    authd a dead port (every check fails: statusOnError), and an `istio: ingressgateway`
    gateway Envoy in front of an echo app."""
    import yaml

    from e2e.harness.istio import (EXT_AUTHZ, RBAC, IngressGateway, Mesh, apply, delete,
                                   ensure_namespace, service_entry)
    from e2e.harness.peers import Echo
    from e2e.harness.proc import free_port

    out = tmp_path_factory.mktemp("rendered")
    render(out, *sorted(EXAMPLES.glob("*.yaml")))
    provider = yaml.safe_load((out / "mesh-config.yaml").read_text())["extensionProviders"][0]
    assert provider["name"] == "portcullis"
    policies = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("authorizationpolicy-*.yaml"))]
    filters = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("envoyfilter-*.yaml"))]
    assert [f["metadata"]["name"] for f in filters] == ["portcullis-shop-orders-api"]
    mesh = Mesh.shared()
    svc = provider["envoyExtAuthzHttp"]
    ensure_namespace(mesh.api, "portcullis-system")
    authd = service_entry("portcullis-authd", "portcullis-system", svc["service"], svc["port"],
                          free_port())
    apply(mesh.api, authd, *filters, *policies)
    mesh.set_provider("portcullis", svc)
    with Echo() as echo, IngressGateway(mesh.istiod, echo, name="examples-gateway") as gw:
        try:
            gw.wait_filters(lambda fs: [f for f in fs if f["name"] == EXT_AUTHZ]
                            and len(shadow(gw, RBAC)) == len(policies) and strips_host_port(gw),
                            "istiod to compile every example policy into the gateway")
            yield {"gw": gw, "policies": policies, "filters": filters, "mesh": mesh,
                   "echo": echo}
        finally:
            delete(mesh.api, authd, *filters, *policies)
            mesh.set_provider("portcullis", None)


def strips_host_port(gw):
    """Whether the gateway's HTTP connection manager strips Host ports and trailing dots."""
    from e2e.harness.istio import HCM
    lst = gw.proxy.listener(gw.port) or {}
    return any(f["name"] == HCM and f["typed_config"].get("strip_any_host_port")
               and f["typed_config"].get("strip_trailing_host_dot")
               for c in lst.get("filter_chains", []) for f in c.get("filters", []))


def shadow(gw, rbac):
    from e2e.harness.istio import shadow_rules
    return shadow_rules(gw.http_filter(rbac))


def example_get(gw, host: str, path: str = "/"):
    from e2e.harness.proc import http
    return http("GET", f"{gw.url}{path}", headers={"Host": host, "Accept": "application/json"})[0]


def test_every_example_is_enforced_by_istiod(example_gateway):
    from e2e.harness.istio import RBAC, rule_strings
    gw, policies = example_gateway["gw"], example_gateway["policies"]
    rules = shadow(gw, RBAC)
    names = {p["metadata"]["name"] for p in policies}
    assert all(any(f"policy[{n}]" in r for r in rules) for n in names), (names, list(rules))
    strings = set().union(*(rule_strings(r) for r in rules.values()))
    for p in policies:
        for h in p["spec"]["rules"][0]["to"][0]["operation"]["hosts"]:
            # h → exact h; h:* → prefix "h:"; *.d → suffix ".d"
            assert h.rstrip("*").lstrip("*") in strings, h
    assert example_gateway["mesh"].istiod.xds_rejects() == 0
    # Every protected host is checked (authd is unreachable here: statusOnError 503) ...
    for host in ("echo.example.com", "echo.example.com:443", "grafana.example.com",
                 "prometheus.apps.example.com", "admin.apps.example.com:8443",
                 "api.shop.example.com", "v2.api.shop.example.com"):
        assert example_get(gw, host) == 503, host
    # ... except the skipped paths, and hosts nobody protects.
    assert example_get(gw, "grafana.example.com", "/api/health") == 200
    assert example_get(gw, "grafana.example.com:443", "/public/logo.png") == 200
    assert example_get(gw, "api.shop.example.com", "/healthz") == 200
    assert example_get(gw, "unprotected.example.com") == 200


# Istio matches AuthorizationPolicy hosts against :authority as given, port included, and
# has no "any port" form for a wildcard: `*.d` is a suffix match, so `x.d:443` is not
# matched, while the gateway's routes ignore the port and still send it to the app. For
# exact hosts the renderer adds `h:*`, `h.` and `h.:*`; a policy with a wildcard host comes
# with an EnvoyFilter that strips ports and trailing dots at its gateway before any filter
# runs (docs/authd-security.md "Wildcard hosts and ports"). A trailing dot reaches the app
# where a route accepts any host (this gateway's `*`).
WILDCARD_WITH_PORT = ("v2.api.shop.example.com:443", "V2.api.shop.example.com:1",
                      "v2.api.shop.example.com.", "v2.api.shop.example.com.:443")
EXACT_ODD_FORMS = ("echo.example.com:8443", "echo.example.com.", "ECHO.example.com.:443")


def test_wildcard_hosts_are_checked_with_any_port(example_gateway):
    gw = example_gateway["gw"]
    want = WILDCARD_WITH_PORT + EXACT_ODD_FORMS
    assert {h: example_get(gw, h) for h in want} == {h: 503 for h in want}
    # Skipped paths and unprotected hosts still reach the app, with a port too.
    assert example_get(gw, "api.shop.example.com:443", "/healthz") == 200
    assert example_get(gw, "unprotected.example.com:443") == 200
    assert example_gateway["mesh"].istiod.xds_rejects() == 0


def test_without_the_rendered_envoyfilter_wildcards_with_a_port_pass_unchecked(example_gateway):
    """What the EnvoyFilter is for: take it away and `x.d:443` reaches the app, while the
    exact hosts' extra forms keep their checks."""
    from e2e.harness.istio import apply, delete
    from e2e.harness.proc import wait_for
    gw, api, filters = example_gateway["gw"], example_gateway["mesh"].api, example_gateway["filters"]
    delete(api, *filters)
    try:
        wait_for("istiod to drop the EnvoyFilter", lambda: not strips_host_port(gw),
                 ignore=(OSError, ValueError))
        assert example_get(gw, "v2.api.shop.example.com:443") == 200
        assert example_get(gw, "v2.api.shop.example.com") == 503
        assert {h: example_get(gw, h) for h in EXACT_ODD_FORMS} == {h: 503 for h in EXACT_ODD_FORMS}
    finally:
        apply(api, *filters)
        wait_for("istiod to push the EnvoyFilter", lambda: strips_host_port(gw),
                 ignore=(OSError, ValueError))
