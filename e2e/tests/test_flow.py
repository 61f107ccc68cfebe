"""The whole flow a user meets, on real components: kubectl apply of a ProtectedHost → the
controller renders → a real istiod turns the AuthorizationPolicy and the mesh provider into
the gateway Envoy's RBAC shadow rules and ext_authz filter → headless Chromium logs in at
Keycloak → the echo app sees the identity headers; a user outside the allowed groups gets
403; skipped paths reach the app without a check; editing the resource lets them in without
restarting anything; deleting it leaves the host unprotected. Last, the same install with the
controller in --mesh-config=shared and istiod reading SHARED_MESH_CONFIG."""

from __future__ import annotations

import json

import pytest
import yaml

from e2e.harness.istio import ISTIO_NS, ext_authz_facts
from e2e.harness.peers import Browser, DEFAULT_USERS
from e2e.harness.proc import http, skip_e2e, wait_for
from e2e.harness.stack import AUTHD_SERVICE, SHARED_CONFIGMAP, Stack

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

PASSWORDS = {u["username"]: u["password"] for u in DEFAULT_USERS}
SKIP = ["/healthz", "/public/*"]


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        s.apply_echo(groups=["admins"], skip=SKIP)
        s.wait_protected()
        yield s


def gateway_get(stack: Stack, accept: str, path: str = "/"):
    """A request to the gateway for the protected host, without a browser."""
    return http("GET", f"http://127.0.0.1:{stack.gateway_port}{path}",
                headers={"Host": f"{stack.host}:{stack.gateway_port}", "Accept": accept})


def login(stack: Stack, user: str) -> dict:
    return Browser().run([
        {"goto": stack.url},
        {"login": {"username": user, "password": PASSWORDS[user]}},
    ], check=False)


def mesh(stack: Stack, name: str = "istio") -> dict:
    r = stack.api.kubectl("-n", ISTIO_NS, "get", "configmap", name, "-o", "json")
    return yaml.safe_load(json.loads(r.stdout)["data"]["mesh"]) or {}


def portcullis_provider(m: dict) -> dict:
    return next(p["envoyExtAuthzHttp"] for p in m.get("extensionProviders", [])
                if p["name"] == "portcullis")


def authd_decisions(stack: Stack) -> float:
    text = http("GET", f"http://127.0.0.1:{stack.authd_admin_port}/metrics")[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("portcullis_authd_decisions_total"))


def assert_gateway_enforces(stack: Stack, provider: dict) -> None:
    """What istiod made of the provider and the policy, read back from Envoy."""
    filters = stack.ext_authz()
    assert len(filters) == 1, filters
    got = ext_authz_facts(filters[0])
    assert got["cluster"] == f"outbound|{provider['port']}||{AUTHD_SERVICE}"
    assert got["path_prefix"] == provider["pathPrefix"] == "/ext-authz"
    assert got["timeout"] == provider["timeout"] == "2s"
    assert got["failure_mode_allow"] is False
    assert got["status_on_error"] == "ServiceUnavailable" and provider["statusOnError"] == "503"
    assert got["allowed_headers"] == provider["includeRequestHeadersInCheck"]
    assert got["allowed_upstream_headers"] == provider["headersToUpstreamOnAllow"]
    assert got["allowed_client_headers"] == provider["headersToDownstreamOnDeny"]
    assert got["allowed_client_headers_on_success"] == provider["headersToDownstreamOnAllow"]
    # The ext_authz filter runs only where the CUSTOM policy's shadow rule matched: the host,
    # the host with any port (h:* becomes a prefix "h:"), not the skipped paths.
    hosts = stack.protected_hosts()
    assert {stack.host, f"{stack.host}:"} <= hosts, hosts
    assert {"/healthz", "/public/"} <= hosts, hosts
    assert stack.istiod.xds_rejects() == 0


def test_istiod_renders_the_controllers_provider_and_policy_into_the_gateway(stack):
    m = mesh(stack)
    assert_gateway_enforces(stack, portcullis_provider(m))
    # The controller merged its provider without touching the installer's settings.
    assert m["accessLogFile"] == "/dev/stdout"
    assert m["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert [p["name"] for p in m["extensionProviders"]] == ["other-team", "portcullis"]


def test_unauthenticated_request_is_sent_to_keycloak(stack):
    status, headers, _ = gateway_get(stack, "text/html")
    assert status == 302
    assert headers["Location"].startswith(stack.keycloak.issuer + "/protocol/openid-connect/auth?")
    assert "code_challenge_method=S256" in headers["Location"]


def test_alice_logs_in_and_the_app_sees_her_email(stack):
    result = login(stack, "alice")
    assert result["ok"], result.get("error")
    assert result["status"] == 200
    assert result["url"].startswith(stack.url)
    assert "alice@example.com" in result["text"]
    seen = [r for r in stack.echo.requests if r["headers"].get("x-auth-request-email")]
    assert seen and seen[-1]["headers"]["x-auth-request-email"] == "alice@example.com"
    assert "admins" in seen[-1]["headers"]["x-auth-request-groups"]
    assert stack.ready_condition() == "True"


def test_bob_outside_the_group_gets_403(stack):
    result = login(stack, "bob")
    assert result["status"] == 403, result


def test_skipped_paths_reach_the_app_without_a_check(stack):
    before = authd_decisions(stack)
    for path in ("/healthz", "/public/logo.png"):
        status, _, body = gateway_get(stack, "application/json", path)
        assert status == 200, (path, body[:200])
        assert json.loads(body)["path"] == path
    # A path next to them is still checked.
    assert gateway_get(stack, "application/json", "/healthz/deeper")[0] == 401
    assert authd_decisions(stack) == before + 1


def test_adding_bobs_group_lets_him_in_without_restarts(stack):
    pids = (stack.authd.pid, stack.controller.pid, stack.istiod.pid, stack.gateway.pid)
    patch = json.dumps({"spec": {"access": {"allowedGroups": ["admins", "staff"]}}})
    stack.api.kubectl("-n", "test-auth", "patch", "ph", "echo", "--type=merge", "-p", patch)
    # Ready=True for the new generation means authd enforces it (its Lease says so).
    wait_for("Ready for the new generation", lambda: stack.ready_condition(2) == "True")
    assert login(stack, "bob")["status"] == 200
    result = login(stack, "bob")
    assert "bob@example.com" in result["text"]
    assert (stack.authd.pid, stack.controller.pid, stack.istiod.pid, stack.gateway.pid) == pids
    assert stack.authd.alive() and stack.controller.alive() and stack.istiod.proc.alive()


def test_delete_leaves_the_host_unprotected(stack):
    stack.api.kubectl("-n", "test-auth", "delete", "ph", "echo", "--timeout=60s")
    wait_for("istiod to drop the host from the gateway's checks",
             lambda: stack.host not in stack.protected_hosts(), timeout=60)
    status, _, body = gateway_get(stack, "application/json")
    assert status == 200
    assert "x-auth-request-email" not in json.loads(body)["headers"]
    r = stack.api.kubectl("get", "authorizationpolicies", "-A", "-o", "name")
    assert r.stdout.strip() == ""
    assert stack.istiod.xds_rejects() == 0


def test_shared_mesh_config_mode(stack):
    """--mesh-config=shared: the controller writes only its own ConfigMap, istiod merges it
    over `istio` through SHARED_MESH_CONFIG, and the gateway enforces the same provider."""
    stack.use_shared_mesh_config()
    stack.apply_echo(groups=["admins"], skip=SKIP)
    stack.wait_protected()
    shared, installer = mesh(stack, SHARED_CONFIGMAP), mesh(stack)
    assert [p["name"] for p in shared["extensionProviders"]] == ["portcullis"]
    assert [p["name"] for p in installer["extensionProviders"]] == ["other-team"]
    assert_gateway_enforces(stack, portcullis_provider(shared))
    status, headers, _ = gateway_get(stack, "text/html")
    assert status == 302
    assert headers["Location"].startswith(stack.keycloak.issuer + "/protocol/openid-connect/auth?")
    result = login(stack, "alice")
    assert result["status"] == 200 and "alice@example.com" in result["text"], result
