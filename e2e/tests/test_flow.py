"""The whole flow a user meets, on real components: kubectl apply of a ProtectedHost → the
controller renders → the gateway Envoy is configured from what was rendered → headless
Chromium logs in at Keycloak → the echo app sees the identity headers; a user outside the
allowed groups gets 403; editing the resource lets them in without restarting anything;
deleting it leaves the host unprotected."""

from __future__ import annotations

import json

import pytest

from e2e.harness.peers import Browser, DEFAULT_USERS
from e2e.harness.proc import http, skip_e2e, wait_for
from e2e.harness.stack import Stack

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

PASSWORDS = {u["username"]: u["password"] for u in DEFAULT_USERS}


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        s.apply_echo(groups=["admins"])
        s.wait_protected()
        yield s


def gateway_get(stack: Stack, accept: str):
    """A request to the gateway for the protected host, without a browser."""
    return http("GET", f"http://127.0.0.1:{stack.gateway_port}/",
                headers={"Host": f"{stack.host}:{stack.gateway_port}", "Accept": accept})


def login(stack: Stack, user: str) -> dict:
    return Browser().run([
        {"goto": stack.url},
        {"login": {"username": user, "password": PASSWORDS[user]}},
    ], check=False)


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


def test_adding_bobs_group_lets_him_in_without_restarts(stack):
    pids = (stack.authd.pid, stack.controller.pid)
    patch = json.dumps({"spec": {"access": {"allowedGroups": ["admins", "staff"]}}})
    stack.api.kubectl("-n", "test-auth", "patch", "ph", "echo", "--type=merge", "-p", patch)
    # Ready=True for the new generation means authd enforces it (its Lease says so).
    wait_for("Ready for the new generation", lambda: stack.ready_condition(2) == "True")
    assert login(stack, "bob")["status"] == 200
    result = login(stack, "bob")
    assert "bob@example.com" in result["text"]
    assert (stack.authd.pid, stack.controller.pid) == pids
    assert stack.authd.alive() and stack.controller.alive()


def test_delete_leaves_the_host_unprotected(stack):
    stack.api.kubectl("-n", "test-auth", "delete", "ph", "echo", "--timeout=60s")
    wait_for("the policy to be gone", lambda: stack.host not in
             (stack.gateway.applied or (None, [], []))[1], timeout=60)
    status, _, body = gateway_get(stack, "application/json")
    assert status == 200
    assert "x-auth-request-email" not in json.loads(body)["headers"]
    r = stack.api.kubectl("get", "authorizationpolicies", "-A", "-o", "name")
    assert r.stdout.strip() == ""
