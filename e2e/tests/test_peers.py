"""Smoke tests for the real peers in e2e/harness/peers.py, without authd.

A tiny Python authorizer stands in for authd here: the peer under test is Envoy / nginx.
Run:  python3 -m pytest e2e/tests/test_peers.py           (Keycloak included, ~1 min more)
      python3 -m pytest e2e/tests/test_peers.py -m 'not keycloak'
      python3 -m pytest e2e/tests/test_peers.py -m keycloak
Skipped only with PORTCULLIS_SKIP_E2E=1.
"""
import base64
import json
import secrets
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness import peers  # noqa: E402
from e2e.harness.peers import (Browser, Echo, Keycloak, Nginx, OidcProvider,  # noqa: E402
                               jwt_claims, serve_http, stop_http)
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.proc import http, skip_e2e  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")


# --- a stand-in authorizer ---------------------------------------------------------------

class StubAuthz:
    """Decides by the path Envoy/nginx sends: .../allow → 200/202 + identity headers,
    .../login → 302, .../api → 401, .../deny → 403. Records every check request."""

    def __init__(self):
        self.requests = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_any(self):
                stub.requests.append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                path = self.headers.get("X-Original-URI") or self.path
                hdrs, body = [], b""
                if "/allow" in path or "/public" in path:
                    code = 202 if self.path == "/oauth2/auth" else 200
                    hdrs = [("X-Auth-Request-Email", "alice@example.com"), ("X-Auth-Request-User", "alice"),
                            ("X-Auth-Request-Groups", "admins"),
                            ("X-Auth-Request-Preferred-Username", "alice"),
                            ("X-Internal-Secret", "must-not-leak"), ("Set-Cookie", "_portcullis=refreshed; Path=/")]
                elif "/login" in path:
                    code = 302 if self.path != "/oauth2/auth" else 401
                    hdrs = [("Location", "http://idp.example/auth?state=xyz"),
                            ("Set-Cookie", "_portcullis_csrf=abc; Path=/; HttpOnly"),
                            ("X-Internal-Secret", "must-not-leak")]
                elif "/api" in path:
                    code, hdrs = 401, [("WWW-Authenticate", 'Bearer realm="portcullis"'),
                                       ("Content-Type", "application/json")]
                    body = b'{"error":"unauthorized"}'
                elif self.path.startswith("/oauth2/start"):
                    code, body = 200, f"start {self.path}".encode()
                    hdrs = [("Content-Type", "text/plain")]
                else:
                    code, hdrs = 403, [("Content-Type", "text/html"), ("X-Internal-Secret", "must-not-leak")]
                    body = b"<h1>403 forbidden by stub</h1>"
                self.send_response(code)
                for k, v in hdrs:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_any

        self.server = serve_http(H, name="stub-authz")
        self.port = self.server.server_address[1]

    def close(self):
        stop_http(self.server)


@pytest.fixture(scope="module")
def echo():
    with Echo() as e:
        yield e


@pytest.fixture(scope="module")
def stub():
    s = StubAuthz()
    yield s
    s.close()


def provider_for(port, **over):
    p = {  # DESIGN.md §4.2 provider, pointed at the stub
        "service": "127.0.0.1", "port": port, "pathPrefix": "/ext-authz", "timeout": "2s",
        "failOpen": False, "statusOnError": "503",
        "includeRequestHeadersInCheck": ["cookie", "authorization", "accept", "x-requested-with",
                                         "sec-fetch-mode", "x-forwarded-proto", "x-forwarded-host", "user-agent"],
        "includeAdditionalHeadersInCheck": {"x-portcullis-door": "envoy"},
        "headersToUpstreamOnAllow": ["x-auth-request-email", "x-auth-request-user", "x-auth-request-groups",
                                     "authorization", "cookie"],
        "headersToDownstreamOnDeny": ["content-type", "set-cookie", "location", "www-authenticate", "cache-control"],
        "headersToDownstreamOnAllow": ["set-cookie"],
    }
    p.update(over)
    return p


# --- Echo ---------------------------------------------------------------------------------

def test_echo_json_and_html(echo):
    status, _, body = http("POST", f"{echo.url}/some/path?q=1", headers={"X-Thing": "one"}, data=b"hi")
    rec = json.loads(body)
    assert status == 200 and rec["method"] == "POST" and rec["path"] == "/some/path?q=1"
    assert rec["headers"]["x-thing"] == "one" and rec["body"] == "hi"
    status, hdrs, body = http("GET", f"{echo.url}/", headers={"Accept": "text/html",
                                                                "X-Auth-Request-Email": "alice@example.com"})
    assert hdrs["Content-Type"].startswith("text/html")
    assert b"X-Auth-Request-Email: alice@example.com" in body


# --- Envoy --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def envoy(echo, stub):
    with Envoy(provider_for(stub.port), echo, hosts=["app.localhost"], not_paths=["/public/*", "/healthz"]) as e:
        yield e


def test_envoy_allow_passes_allowed_upstream_headers(envoy, echo, stub):
    n = len(stub.requests)
    status, hdrs, body = http("GET", f"{envoy.url}/allow/x?y=1", headers={
        "Host": "app.localhost", "Cookie": "a=b", "X-Random": "nope", "Authorization": "Bearer t",
        "X-Auth-Request-Email": "mallory@example.com"})
    assert status == 200, body
    up = json.loads(body)["headers"]
    assert up["x-auth-request-email"] == "alice@example.com"      # overwritten by the authorizer
    assert up["x-auth-request-groups"] == "admins"
    assert "x-internal-secret" not in up                           # not in headersToUpstreamOnAllow
    assert hdrs.get_all("Set-Cookie") == ["_portcullis=refreshed; Path=/"]   # headersToDownstreamOnAllow
    assert hdrs.get("X-Internal-Secret") is None
    check = stub.requests[n]
    assert check["path"] == "/ext-authz/allow/x?y=1"
    assert check["headers"]["host"] == "app.localhost"
    assert check["headers"]["cookie"] == "a=b" and check["headers"]["authorization"] == "Bearer t"
    assert check["headers"]["x-portcullis-door"] == "envoy"        # includeAdditionalHeadersInCheck
    assert "x-random" not in check["headers"]                      # not in includeRequestHeadersInCheck
    assert check["headers"].get("x-forwarded-proto") == "http"


def test_envoy_deny_paths_return_authorizer_response(envoy, echo):
    n = len(echo.requests)
    status, hdrs, _ = http("GET", f"{envoy.url}/login", headers={"Host": "app.localhost:8443"})
    assert status == 302 and hdrs["Location"] == "http://idp.example/auth?state=xyz"
    assert "_portcullis_csrf=abc" in hdrs["Set-Cookie"] and hdrs.get("X-Internal-Secret") is None
    status, hdrs, body = http("GET", f"{envoy.url}/api/v1", headers={"Host": "app.localhost",
                                                                      "Accept": "application/json"})
    assert status == 401 and hdrs["WWW-Authenticate"].startswith("Bearer") and body == b'{"error":"unauthorized"}'
    status, hdrs, body = http("GET", f"{envoy.url}/other", headers={"Host": "app.localhost"})
    assert status == 403 and b"forbidden by stub" in body and hdrs.get("X-Internal-Secret") is None
    assert len(echo.requests) == n                                 # upstream never reached


def test_envoy_hosts_and_not_paths_bypass_ext_authz(envoy, echo, stub):
    n = len(stub.requests)
    assert http("GET", f"{envoy.url}/other", headers={"Host": "unprotected.localhost"})[0] == 200
    assert http("GET", f"{envoy.url}/public/x", headers={"Host": "app.localhost"})[0] == 200
    assert http("GET", f"{envoy.url}/healthz", headers={"Host": "app.localhost"})[0] == 200
    assert http("GET", f"{envoy.url}/healthz/deeper", headers={"Host": "app.localhost"})[0] == 403
    assert len(stub.requests) == n + 1


def test_envoy_status_on_error_and_reconfigure(echo, stub):
    dead = peers.free_port()
    with Envoy(provider_for(dead), echo) as e:
        assert http("GET", f"{e.url}/allow", headers={"Host": "x.localhost"})[0] == 503
        e.reconfigure(provider_for(dead, failOpen=True))
        assert http("GET", f"{e.url}/allow", headers={"Host": "x.localhost"})[0] == 200
        e.reconfigure(provider_for(stub.port))
        assert http("GET", f"{e.url}/deny", headers={"Host": "x.localhost"})[0] == 403
        assert e.ext_authz_stat("denied") >= 1


# --- nginx --------------------------------------------------------------------------------

def test_nginx_auth_request(echo, stub):
    with Nginx(f"127.0.0.1:{stub.port}", echo) as ng:
        n = len(stub.requests)
        status, hdrs, body = http("GET", f"{ng.url}/allow/page?x=1", headers={
            "Host": "app.localhost", "Cookie": "s=1", "X-Auth-Request-Email": "mallory@example.com"})
        assert status == 200, body
        up = json.loads(body)["headers"]
        assert up["x-auth-request-email"] == "alice@example.com" and up["x-auth-request-user"] == "alice"
        assert up["x-auth-request-groups"] == "admins" and up["x-auth-request-preferred-username"] == "alice"
        assert hdrs["Set-Cookie"] == "_portcullis=refreshed; Path=/"
        check = stub.requests[n]
        assert check["path"] == "/oauth2/auth" and check["headers"]["x-original-uri"] == "/allow/page?x=1"
        assert check["headers"]["x-forwarded-host"] == "app.localhost" and check["headers"]["cookie"] == "s=1"

        status, hdrs, _ = http("GET", f"{ng.url}/login/here?a=b", headers={"Host": "app.localhost"})
        assert status == 302
        assert hdrs["Location"].endswith("/oauth2/start?rd=http://app.localhost/login/here?a=b")
        status, _, body = http("GET", f"{ng.url}/oauth2/start?rd=x", headers={"Host": "app.localhost"})
        assert status == 200 and body == b"start /oauth2/start?rd=x"
        assert http("GET", f"{ng.url}/nope", headers={"Host": "app.localhost"})[0] == 403


# --- oidc-provider + browser ----------------------------------------------------------------

class RelyingParty:
    """A tiny confidential RP: / → authorization request with PKCE; /cb → code exchange,
    then a page showing the ID token's claims."""

    def __init__(self, client_id, secret):
        self.client_id, self.secret, self.idp = client_id, secret, None
        self.pending = {}
        rp = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                if u.path == "/":
                    verifier, challenge = peers.pkce_pair()
                    state = secrets.token_urlsafe(12)
                    rp.pending[state] = verifier
                    loc = rp.idp["authorization_endpoint"] + "?" + urllib.parse.urlencode({
                        "client_id": rp.client_id, "response_type": "code", "scope": "openid email profile",
                        "redirect_uri": rp.redirect_uri, "state": state, "nonce": secrets.token_urlsafe(8),
                        "code_challenge": challenge, "code_challenge_method": "S256"})
                    self.send_response(302)
                    self.send_header("Location", loc)
                    self.end_headers()
                    return
                verifier = rp.pending.pop(q.get("state"), None)
                basic = base64.b64encode(f"{rp.client_id}:{rp.secret}".encode()).decode()
                status, _, body = http("POST", rp.idp["token_endpoint"], headers={"Authorization": f"Basic {basic}"},
                                       data={"grant_type": "authorization_code", "code": q.get("code", ""),
                                             "redirect_uri": rp.redirect_uri, "code_verifier": verifier or ""})
                if status == 200:
                    claims = jwt_claims(json.loads(body)["id_token"])
                    out = f"logged in as {claims['sub']} email {claims.get('email')} groups {','.join(claims.get('groups', []))}"
                else:
                    out = f"token error {status} {body.decode()}"
                data = f"<html><body><p id=result>{out}</p></body></html>".encode()
                self.send_response(200 if status == 200 else 500)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = serve_http(H, name="relying-party")
        self.port = self.server.server_address[1]
        self.url = f"http://rp.localhost:{self.port}"
        self.redirect_uri = f"{self.url}/cb"

    def close(self):
        stop_http(self.server)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_oidc_provider_discovery_and_browser_code_flow():
    rp = RelyingParty("rp", "rp-secret")
    try:
        clients = [{"clientId": "rp", "secret": "rp-secret", "redirectUris": [rp.redirect_uri]},
                   {"clientId": "robot", "secret": "robot-secret", "serviceAccounts": True}]
        with OidcProvider(clients) as idp:
            print(f"oidc-provider ready in {idp.startup_seconds:.2f}s")
            d = idp.discovery()
            assert d["issuer"] == idp.issuer and "S256" in d["code_challenge_methods_supported"]
            assert "groups" in d["claims_supported"]
            assert idp.token_client_credentials("robot", "robot-secret")["token_type"] == "Bearer"
            rp.idp = d
            b = Browser()
            res = b.run([{"goto": rp.url + "/"}, {"expect_url": "/interaction/"},
                         {"login": {"username": "alice", "password": "wrong"}}, {"text": "Invalid username"},
                         {"login": {"username": "alice", "password": "alice-password"}},
                         {"expect_status": 200}, {"text": "logged in as alice"}])
            print(f"browser scenario took {b.last_run_seconds:.2f}s")
            assert "email alice@example.com groups admins" in res["text"]
            assert res["url"].startswith(rp.redirect_uri)
            # two tabs logging in at once (carol in both: one session, two codes)
            res = b.run([{"open_tabs": [
                [{"goto": rp.url + "/"}, {"login": {"username": "carol", "password": "carol-password"}},
                 {"text": "groups admins,staff"}],
                [{"goto": rp.url + "/"}, {"login": {"username": "bob", "password": "bob-password"}},
                 {"text": "groups staff"}]]}])
            assert len(res["tabs"]) == 2 and all(t["ok"] for t in res["tabs"])
            # PKCE is required
            status, hdrs, _ = http("GET", d["authorization_endpoint"] + "?" + urllib.parse.urlencode({
                "client_id": "rp", "response_type": "code", "scope": "openid", "redirect_uri": rp.redirect_uri}))
            assert status in (302, 303) and "error=invalid_request" in hdrs["Location"]
            assert "PKCE" in urllib.parse.unquote_plus(hdrs["Location"])
    finally:
        rp.close()


def test_oidc_provider_is_started_again_when_its_first_start_stalls(tmp_path):
    """A node that stalls at start-up (here a wrapper that stops itself, the first time only)
    is recorded in its log — state and stacks — stopped, and started again on the same port."""
    marker, node = tmp_path / "stalled", tmp_path / "node-stalls-once"
    node.write_text(f'#!/bin/sh\nif [ ! -e "{marker}" ]; then : > "{marker}"; kill -STOP $$; fi\n'
                    'exec node "$@"\n')
    node.chmod(0o755)
    idp = OidcProvider([{"clientId": "rp", "secret": "s", "redirectUris": ["http://x/cb"]}],
                       node=str(node))
    try:
        with pytest.warns(UserWarning, match="started again"):
            idp.start(timeout=60, first=3)
        assert idp.discovery()["issuer"] == idp.issuer
        log = idp.proc.log_path.read_text()
        assert "not ready after 3s: the process as it is" in log
        assert "State:\tT (stopped)" in log
        assert log.count(" start: ") == 2
    finally:
        idp.stop()


# --- Keycloak (slow) --------------------------------------------------------------------

@pytest.mark.keycloak
def test_keycloak_password_grant_groups_claim():
    rp = RelyingParty("rp", "rp-secret")
    clients = [{"clientId": "echo", "secret": "echo-secret", "directAccessGrants": True,
                "redirectUris": ["http://echo.localhost:*/oauth2/callback"]},
               {"clientId": "rp", "secret": "rp-secret", "redirectUris": [rp.redirect_uri], "pkce": "S256"}]
    t0 = time.monotonic()
    with rp, Keycloak(clients) as kc:
        print(f"keycloak ready in {time.monotonic() - t0:.1f}s")
        assert kc.discovery()["issuer"] == kc.issuer
        tok = kc.token_password("echo", "echo-secret", "alice", "alice-password")
        idt = jwt_claims(tok["id_token"])
        assert idt["groups"] == ["admins"] and idt["email"] == "alice@example.com" and idt["email_verified"]
        assert jwt_claims(tok["access_token"])["groups"] == ["admins"]
        carol = jwt_claims(kc.token_password("echo", "echo-secret", "carol", "carol-password")["id_token"])
        assert sorted(carol["groups"]) == ["admins", "staff"]
        with pytest.raises(peers.PeerError):
            kc.token_password("echo", "echo-secret", "alice", "wrong")
        cc = jwt_claims(kc.token_client_credentials()["access_token"])
        assert cc["azp"] == "robot"
        # the browser logs in at Keycloak's own form
        rp.idp = kc.discovery()
        res = Browser().run([{"goto": rp.url + "/"}, {"text": "Sign in"},
                             {"login": {"username": "bob", "password": "bob-password"}},
                             {"expect_status": 200}, {"text": "logged in as"}])
        assert "email bob@example.com groups staff" in res["text"]
