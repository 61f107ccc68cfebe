"""portcullis-authd against real peers (DESIGN.md §6, issue 2 "Integration against real
peers"): real Envoy configured by a real istiod from the README's `envoyExtAuthzHttp` provider,
real nginx running examples/nginx/ unchanged (but for addresses), real nginx shaped like
ingress-nginx's generated config for the README's annotations, Keycloak (realm `main`),
the npm oidc-provider (the IdP that gets stopped) and headless Chromium.

One authd serves every host below; Keycloak starts once for the module (~50 s).

  app1.localhost     Keycloak, allowedGroups [admins], skip /public/, api /api/  (Envoy)
  app2.localhost     Keycloak, allowedGroups [staff]                             (Envoy)
  big.localhost      Keycloak, anyone (dave has 200 long group names)            (Envoy)
  api.localhost      Keycloak, bearer tokens with audience portcullis-api        (Envoy)
  ng.localhost       Keycloak, anyone                             (nginx, ingress-nginx)
  app.ing.localhost  Keycloak, allowedGroups [staff]                     (ingress-nginx)
  ops.ing.localhost  Keycloak, allowedGroups [admins], skip /public/     (ingress-nginx)
  sec.ing.localhost  Keycloak, allowedGroups [admins]; its auth subrequest also sets
                     X-Forwarded-Host $host (auth-proxy-set-headers)     (ingress-nginx)
  down.localhost     oidc-provider, anyone                                       (Envoy)

Chromium maps every host name to 127.0.0.1; Python requests connect to 127.0.0.1 and set Host.
The names are *.localhost on purpose: authd's cookies are always `Secure`, and Chromium keeps
Secure cookies set over plain http only for localhost names (potentially trustworthy origins).
The binary is not built here: env PORTCULLIS_AUTHD, default build/authd/portcullis-authd.
Run:  python3 -m pytest e2e/tests/test_authd_peers.py          (~2-3 min)
"""
from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness import peers  # noqa: E402
from e2e.harness.authd import Authd, config_head, idp_login, mesh_provider, set_cookies  # noqa: E402
from e2e.harness.peers import (DEFAULT_USERS, Browser, Echo, IngressNginx,  # noqa: E402
                               Keycloak, Nginx, OidcProvider, nginx_user)
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.proc import REPO, free_port, http, skip_e2e  # noqa: E402

pytestmark = [pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1"),
              pytest.mark.keycloak]

EXAMPLE_NGINX = REPO / "examples" / "nginx"

KC_CLIENT, KC_SECRET = "portcullis", "portcullis-client-secret"
IDP_CLIENT, IDP_SECRET = "down", "down-client-secret"
API_AUDIENCE = "portcullis-api"
ENVOY_HOSTS = ["app1.localhost", "app2.localhost", "big.localhost", "api.localhost", "down.localhost"]
INGRESS_HOSTS = ["ng.localhost", "app.ing.localhost", "ops.ing.localhost", "sec.ing.localhost"]
PASSWORDS = {u["username"]: u["password"] for u in DEFAULT_USERS}

# dave: an ID token of ~9 KB (200 groups with long names) → a session cookie in chunks.
# (authd refuses sessions whose cookies would exceed its 16 KiB Cookie header bound.)
BIG_GROUPS = [f"team-{i:03d}-platform-engineers" for i in range(200)]
DAVE = {"username": "dave", "password": "dave-password", "email": "dave@example.com",
        "firstName": "Dave", "lastName": "Many", "groups": BIG_GROUPS}
PASSWORDS["dave"] = DAVE["password"]

def authd_config(c: dict, extra: str = "") -> str:
    kc = f'{{issuerURL: "{c["kc_issuer"]}", clientID: {KC_CLIENT}, clientSecret: {KC_SECRET}}}'
    idp = f'{{issuerURL: "{c["idp_issuer"]}", clientID: {IDP_CLIENT}, clientSecret: {IDP_SECRET}}}'
    return config_head(c) + f"""\
hosts:
  - id: test/app1
    hosts: [app1.localhost]
    oidc: {kc}
    access: {{allowedGroups: [admins]}}
    paths: {{skip: [/public/], api: [/api/]}}
  - id: test/app2
    hosts: [app2.localhost]
    oidc: {kc}
    access: {{allowedGroups: [staff]}}
  - id: test/big
    hosts: [big.localhost]
    oidc: {kc}
  - id: test/api
    hosts: [api.localhost]
    oidc: {kc}
    bearerTokens: {{enabled: true, audiences: [{API_AUDIENCE}]}}
  - id: test/nginx
    hosts: [ng.localhost]
    oidc: {kc}
  - id: test/down
    hosts: [down.localhost]
    oidc: {idp}
  - id: test/ing-app
    hosts: [app.ing.localhost]
    oidc: {kc}
    access: {{allowedGroups: [staff]}}
  - id: test/ing-ops
    hosts: [ops.ing.localhost]
    oidc: {kc}
    access: {{allowedGroups: [admins]}}
    paths: {{skip: [/public/]}}
  - id: test/ing-sec
    hosts: [sec.ing.localhost]
    oidc: {kc}
    access: {{allowedGroups: [admins]}}
{extra}"""


class ExampleNginx(Nginx):
    """nginx running examples/nginx/nginx.conf with its included portcullis-locations.conf;
    only addresses, the listen port and the daemon's private paths are changed."""

    def render(self) -> str:
        text = (EXAMPLE_NGINX / "nginx.conf").read_text()
        a_host, a_port = peers._addr(self.authd)
        u_host, u_port = peers._addr(self.upstream)
        subs = [(r"server 127\.0\.0\.1:4180;", f"server {a_host}:{a_port};"),
                (r"server 127\.0\.0\.1:8080;", f"server {u_host}:{u_port};"),
                (r"listen 80;", f"listen {self.host}:{self.port};"),
                (r"server_name echo\.example\.com;", "server_name _;"),
                (r"include portcullis-locations\.conf;",
                 f"include {EXAMPLE_NGINX / 'portcullis-locations.conf'};"),
                (r"http \{", "http {\n" + "".join(
                    f"    {k}_temp_path {self.dir}/tmp/{k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
                 + f"    access_log {self.dir}/access.log;\n")]
        for pattern, repl in subs:
            text, n = re.subn(pattern, lambda _m, r=repl: r, text, count=1)
            assert n == 1, f"examples/nginx/nginx.conf lacks {pattern!r}"
        return (f"{nginx_user()}daemon off;\nmaster_process on;\nworker_processes 1;\npid {self.dir}/nginx.pid;\n"
                f"error_log {self.dir}/error.log info;\n") + text


# ------------------------------------------------------------------------------------------
# the module's peers

@pytest.fixture(scope="module")
def env():
    # ports first: the IdPs must know the callback URLs before they start
    envoy_port, nginx_port, ingress_port, idp_port = free_port(), free_port(), free_port(), free_port()
    kc_port = free_port()
    kc_redirects = [f"http://{h}:{envoy_port}/oauth2/callback" for h in ENVOY_HOSTS]
    kc_redirects.append(f"http://ng.localhost:{nginx_port}/oauth2/callback")
    kc_redirects.append(f"http://app.ing.localhost:{ingress_port}/oauth2/callback")
    kc = Keycloak([
        {"clientId": KC_CLIENT, "secret": KC_SECRET, "redirectUris": kc_redirects},
        {"clientId": "robot", "secret": "robot-secret", "serviceAccounts": True,
         "standardFlow": False, "audiences": [API_AUDIENCE]},
        {"clientId": "robot2", "secret": "robot2-secret", "serviceAccounts": True,
         "standardFlow": False},
    ], users=DEFAULT_USERS + [DAVE], port=kc_port)
    idp = OidcProvider([{"clientId": IDP_CLIENT, "secret": IDP_SECRET,
                         "redirectUris": [f"http://down.localhost:{envoy_port}/oauth2/callback"]}],
                       port=idp_port)
    authd = Authd("authd-peers", authd_config, kc_issuer=kc.issuer, idp_issuer=idp.issuer,
                  cookie_secret="peers-test-cookie-secret-0123456789abcdef\n")
    echo = Echo()
    envoy = Envoy(mesh_provider(authd.port), echo, hosts=ENVOY_HOSTS, port=envoy_port)
    nginx = ExampleNginx(("127.0.0.1", authd.port), echo, port=nginx_port)
    ingress = IngressNginx(("127.0.0.1", authd.port), echo, INGRESS_HOSTS, port=ingress_port,
                           auth_proxy_set_headers={"sec.ing.localhost": {"X-Forwarded-Host": "$host"}})
    started = []
    kc_error = []

    def start_keycloak():
        try:
            kc.start()
        except Exception as e:  # noqa: BLE001 - re-raised in the fixture
            kc_error.append(e)

    t0 = time.monotonic()
    kc_thread = threading.Thread(target=start_keycloak, daemon=True)
    try:
        started.append(kc)
        kc_thread.start()
        for peer in (echo, idp, envoy, nginx, ingress):
            started.append(peer)  # first: stopped even when its start fails half-way
            peer.start()
        kc_thread.join(300)
        if kc_error or kc_thread.is_alive():
            raise kc_error[0] if kc_error else peers.PeerError("Keycloak did not start")
        started.append(authd)
        authd.start(ready="/readyz", timeout=30)
        print(f"peers up in {time.monotonic() - t0:.1f}s (Keycloak {kc.startup_seconds:.1f}s)")
        yield {"kc": kc, "idp": idp, "authd": authd, "echo": echo, "envoy": envoy,
               "nginx": nginx, "ingress": ingress}
    finally:
        kc_thread.join(300)  # Keycloak's own start gives up (and stops it) within 300 s
        for peer in reversed(started):
            peer.stop()  # a peer a test left stopped (SIGSTOP) is continued and stopped


# ------------------------------------------------------------------------------------------
# helpers

def gw(env, host: str, path: str = "/", *, headers: dict | None = None, method: str = "GET",
       cookies: dict | None = None, via: str = "envoy", timeout: float = 15):
    """A request to the gateway (Envoy or nginx) for host; returns (status, headers, body)."""
    port = env[via].port
    h = {"Host": f"{host}:{port}", **(headers or {})}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return http(method, f"http://127.0.0.1:{port}{path}", headers=h, timeout=timeout)


def url(env, host: str, path: str = "/", via: str = "envoy") -> str:
    return f"http://{host}:{env[via].port}{path}"


def browser_cookies(result: dict, domain: str) -> dict:
    return {c["name"]: c["value"] for c in result["cookies"] if c["domain"].lstrip(".") == domain}


def echo_requests(env, since: int, email: str | None = None) -> list:
    reqs = env["echo"].requests[since:]
    if email is not None:
        reqs = [r for r in reqs if r["headers"].get("x-auth-request-email") == email]
    return reqs


def step_statuses(result: dict) -> list:
    return [(s["step"], s.get("status"), s.get("url")) for s in result["steps"]]


def login_steps(start_url: str, user: str) -> list:
    return [{"goto": start_url}, {"login": {"username": user, "password": PASSWORDS[user]}}]


@pytest.fixture(scope="module")
def alice_app1(env):
    """Test 1's browser login through Envoy; other tests reuse the session cookie."""
    n = len(env["echo"].requests)
    result = Browser().run(login_steps(url(env, "app1.localhost", "/hello?x=1"), "alice") + [
        {"expect_status": 200}, {"text": "alice@example.com"}])
    return {"result": result, "cookies": browser_cookies(result, "app1.localhost"), "echo_from": n}


# ------------------------------------------------------------------------------------------
# 1. browser login through Envoy

def test_browser_login_through_envoy_reaches_upstream_with_identity(env, alice_app1):
    result = alice_app1["result"]
    assert result["url"] == url(env, "app1.localhost", "/hello?x=1")
    assert result["status"] == 200
    seen = [r for r in echo_requests(env, alice_app1["echo_from"], "alice@example.com")
            if r["path"] == "/hello?x=1"]
    assert seen, "the upstream never saw alice"
    up = seen[-1]["headers"]
    assert "admins" in up["x-auth-request-groups"]
    assert up["x-auth-request-preferred-username"] == "alice"
    # authd's cookies are taken out of the Cookie header handed to the app
    assert "_portcullis" not in up.get("cookie", "")
    assert "_portcullis" in alice_app1["cookies"]
    # the Python client with the browser's cookie gets the same answer through Envoy
    status, _, body = gw(env, "app1.localhost", "/again", cookies=alice_app1["cookies"])
    assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == "alice@example.com"


# 2. browser login through nginx auth_request (examples/nginx/)

def test_browser_login_through_nginx_example(env):
    n = len(env["echo"].requests)
    start = url(env, "ng.localhost", "/oauth2/start?rd=/dashboard", via="nginx")
    result = Browser().run(login_steps(start, "bob") + [{"expect_status": 200}])
    assert result["url"] == url(env, "ng.localhost", "/dashboard", via="nginx")
    assert "bob@example.com" in result["text"]
    seen = echo_requests(env, n, "bob@example.com")
    assert seen and seen[-1]["headers"]["x-auth-request-groups"] == "staff"
    # a protected page without a session goes to the login through @portcullis_signin
    status, headers, _ = gw(env, "ng.localhost", "/reports", headers={"Accept": "text/html"}, via="nginx")
    assert status == 302
    assert headers["Location"] == url(env, "ng.localhost", "/oauth2/start?rd=/reports", via="nginx")
    # a second browser starts at a page: 401 → /oauth2/start → Keycloak → back to the page
    result = Browser().run(login_steps(url(env, "ng.localhost", "/reports", via="nginx"), "carol")
                           + [{"expect_status": 200}, {"text": "carol@example.com"}])
    assert result["url"] == url(env, "ng.localhost", "/reports", via="nginx")
    cookies = browser_cookies(result, "ng.localhost")
    status, _, body = gw(env, "ng.localhost", "/x", cookies=cookies, via="nginx",
                         headers={"X-Auth-Request-Email": "evil@example.com"})
    assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == "carol@example.com"

    # the same session through the config ingress-nginx generates for the annotations
    ing = env["ingress"].port

    def ingress(path, host="ng.localhost", **kw):
        return http("GET", f"http://127.0.0.1:{ing}{path}", headers={"Host": f"{host}:{ing}", **kw})

    status, _, body = ingress("/via/ingress?q=1", Cookie="; ".join(f"{k}={v}" for k, v in cookies.items()),
                              **{"X-Auth-Request-Email": "evil@example.com"})
    assert status == 200, body[:300]
    up = json.loads(body)
    assert up["headers"]["x-auth-request-email"] == "carol@example.com" and up["path"] == "/via/ingress?q=1"
    status, headers, _ = ingress("/via/ingress")
    assert status == 302 and headers["Location"] == f"http://ng.localhost:{ing}/oauth2/start?rd=/via/ingress"
    assert ingress("/", host="unknown.localhost")[0] == 403


# 2b. the nginx door decides on the host and path the proxy asserts, never on a client's

@pytest.fixture(scope="module")
def bob_ing(env):
    """bob (staff) logs in on app.ing.localhost through the ingress-nginx config: 401 →
    auth-signin → /oauth2/start (the /oauth2 Ingress) → Keycloak → callback → the page."""
    page = url(env, "app.ing.localhost", "/dash", via="ingress")
    result = Browser().run(login_steps(page, "bob") + [{"expect_status": 200},
                                                         {"text": "bob@example.com"}])
    assert result["url"] == page
    return browser_cookies(result, "app.ing.localhost")


def auth_status_errors(nginx, since: int) -> list:
    """The statuses nginx saw from authd that it treats as errors (answered 500 to the client)."""
    return re.findall(r"auth request unexpected status: (\d+)", nginx.error_log()[since:])


def test_ingress_nginx_client_headers_never_pick_another_policy(env, bob_ing):
    """ingress-nginx's auth subrequest sets X-Original-URL but passes the client's own
    X-Forwarded-Host and X-Original-URI through (proxy_pass_request_headers on). A user allowed
    on app.ing gets 403 on ops.ing, and a client header naming another host or path than
    X-Original-URL is refused (authd 400, which nginx answers as 500), never decided."""
    n, log0 = len(env["echo"].requests), env["authd"].log_size()
    err0 = len(env["ingress"].error_log())
    app = f"app.ing.localhost:{env['ingress'].port}"
    assert gw(env, "ops.ing.localhost", "/ops/plain", cookies=bob_ing, via="ingress")[0] == 403
    status, _, body = gw(env, "ops.ing.localhost", "/ops/xfh", cookies=bob_ing, via="ingress",
                         headers={"X-Forwarded-Host": app})
    assert status == 500, (status, body[:200])
    # no session at all: a client X-Original-URI naming a skip path does not skip (with the
    # right X-Forwarded-Host, so that the host is not what gives it away)
    status, _, body = gw(env, "ops.ing.localhost", "/ops/admin", via="ingress",
                         headers={"X-Original-URI": "/public/x",
                                  "X-Forwarded-Host": f"ops.ing.localhost:{env['ingress'].port}"})
    assert status == 500, (status, body[:200])
    assert auth_status_errors(env["ingress"], err0) == ["400", "400"]
    assert not [r for r in echo_requests(env, n) if r["path"].startswith("/ops/")]
    log = env["authd"].log_since(log0)
    assert "X-Original-URL and X-Forwarded-Host name different hosts" in log, log
    assert "X-Original-URL and X-Original-URI name different paths" in log, log
    # what the proxy asserts keeps working: the skip path from X-Original-URL, and a client
    # header that names the same host as X-Original-URL
    assert gw(env, "ops.ing.localhost", "/public/logo.png", via="ingress")[0] == 200
    status, _, body = gw(env, "app.ing.localhost", "/app/again", cookies=bob_ing, via="ingress",
                         headers={"X-Forwarded-Host": app})
    assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == "bob@example.com"


def absolute_form(port: int, routed: str, host_header: str, path: str, cookies: dict | None = None):
    """A request whose request line names `routed` (absolute-form, as sent to a forward proxy)
    while its Host header names `host_header`: nginx routes on the request line ($host) and
    $http_host is the header."""
    extra = [("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))] if cookies else []
    return raw_request(port, host_header, f"http://{routed}:{port}{path}", extra)


def test_request_line_host_cannot_borrow_another_hosts_policy(env, bob_ing, alice_app1):
    """The proxy's own headers disagree when an absolute-form request line names another host
    than the Host header: refused (400), never the Host header's laxer policy."""
    n = len(env["echo"].requests)
    ng, ing = env["nginx"].port, env["ingress"].port
    err0 = len(env["nginx"].error_log())
    # examples/nginx: Host $host (ops.ing) vs X-Forwarded-Host and X-Original-URL ($http_host)
    status, body = absolute_form(ng, "ops.ing.localhost", "app.ing.localhost", "/abs/example", bob_ing)
    assert status == 500, (status, body[:200])
    assert auth_status_errors(env["nginx"], err0) == ["400"]
    # ... and its login start: no redirect_uri built for the Host header's host
    status, body = absolute_form(ng, "ops.ing.localhost", "app.ing.localhost", "/oauth2/start?rd=/")
    assert status == 400, (status, body[:200])
    # ingress-nginx with `X-Forwarded-Host: $host` added to the auth subrequest (sec.ing)
    status, body = absolute_form(ing, "sec.ing.localhost", "app.ing.localhost", "/abs/ingress", bob_ing)
    assert status == 500, (status, body[:200])
    # Envoy routes and checks on the request line's authority alike (alice: app1, not app2)
    status, body = absolute_form(env["envoy"].port, "app2.localhost", "app1.localhost", "/abs/envoy",
                                 alice_app1["cookies"])
    assert status in (400, 403), (status, body[:200])
    assert not [r for r in echo_requests(env, n) if r["path"].startswith("/abs/")]


# 3. two hosts, one authd, different allowedGroups

def test_two_hosts_with_different_groups(env):
    app1, app2 = url(env, "app1.localhost", "/"), url(env, "app2.localhost", "/")
    alice = Browser().run(login_steps(app1, "alice") + [{"expect_status": 200}, {"goto": app2}],
                          check=False)
    assert alice["ok"], alice["error"]
    assert alice["status"] == 403 and alice["url"] == app2, step_statuses(alice)
    # authd's page, not the app's: it names the account that is signed in
    assert "Access denied" in alice["text"] and "alice@example.com" in alice["text"], alice["text"]
    bob = Browser().run(login_steps(app2, "bob") + [{"expect_status": 200},
                                                     {"text": "bob@example.com"}, {"goto": app1}])
    assert bob["status"] == 403, step_statuses(bob)
    # the 403 says why, in a page meant for people; an API client gets JSON
    assert re.search(r"forbidden|not allowed|access denied", bob["text"], re.I), bob["text"][:500]
    bob_app1 = browser_cookies(bob, "app1.localhost")
    status, h, body = gw(env, "app1.localhost", "/api/x", cookies=bob_app1,
                         headers={"Accept": "application/json"})
    assert status == 403 and h["Content-Type"].startswith("application/json"), (status, body[:200])
    json.loads(body)
    # the session is kept: 403 is not "log in again"
    assert not [k for k, v in set_cookies(h).items() if v is None and k.startswith("_portcullis")]


# 4. client-sent identity headers never reach the upstream

def raw_request(port: int, host: str, path: str, header_list: list[tuple[str, str]]):
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", f"{host}:{port}")
    for k, v in header_list:
        conn.putheader(k, v)
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_client_sent_identity_header_never_reaches_upstream(env, alice_app1):
    cookie = "; ".join(f"{k}={v}" for k, v in alice_app1["cookies"].items())
    evil = [("X-Auth-Request-Email", "evil@example.com"), ("x-auth-request-email", "evil2@example.com"),
            ("X-Auth-Request-Groups", "admins,root"), ("X-Auth-Request-User", "root")]
    status, body = raw_request(env["envoy"].port, "app1.localhost", "/smuggle",
                               evil + [("Cookie", cookie)])
    assert status == 200, body
    rec = json.loads(body)
    assert rec["headers"]["x-auth-request-email"] == "alice@example.com"
    assert "admins" in rec["headers"]["x-auth-request-groups"]
    assert "root" not in rec["headers"]["x-auth-request-groups"]
    assert rec["headers"]["x-auth-request-user"] != "root"
    assert not any("evil" in v for _, v in rec["raw_headers"]), rec["raw_headers"]
    # a skip path is allowed without a session, and still never carries a client's identity
    status, body = raw_request(env["envoy"].port, "app1.localhost", "/public/logo.png", evil)
    assert status == 200, body
    rec = json.loads(body)
    assert not any("evil" in v or v == "root" for _, v in rec["raw_headers"]), rec["raw_headers"]


# 5. two tabs logging in at once

def test_two_tabs_log_in_at_once(env):
    """carol already has a Keycloak session (she logged in on app2), then opens two app1 pages
    at once: each tab gets its own authd login state cookie, goes to Keycloak and comes back
    to its own page. (Both tabs submitting Keycloak's password form at the same moment is
    Keycloak's own race, "Your login attempt timed out", so the form is filled once.)"""
    n = len(env["echo"].requests)
    log0 = env["authd"].log_size()
    sso = login_steps(url(env, "app2.localhost", "/"), "carol") + [{"expect_status": 200}]
    tabs = [[{"goto": url(env, "app1.localhost", f"/tab/{name}")}, {"expect_status": 200},
             {"text": "carol@example.com"}] for name in ("one", "two")]
    result = Browser().run(sso + [{"open_tabs": tabs}], check=False)
    assert result["ok"], (result["error"], [(t.get("error"), t["url"], t["status"], t["text"][:300])
                                            for t in result.get("tabs", [])])
    assert [t["url"] for t in result["tabs"]] == [url(env, "app1.localhost", "/tab/one"),
                                                  url(env, "app1.localhost", "/tab/two")]
    assert all(t["status"] == 200 for t in result["tabs"])
    paths = {r["path"] for r in echo_requests(env, n, "carol@example.com")}
    assert {"/tab/one", "/tab/two"} <= paths
    # every login a tab started on app1 completed (when one tab's login finishes before the
    # other tab's first request, that tab is simply let in with the new session: the browser
    # decides the interleaving; test_authd_smoke interleaves two logins deterministically);
    # no state cookie is left behind
    log = env["authd"].log_since(log0)
    started = len(re.findall(r"event=check host=app1\.localhost\S* .*decision=login ", log))
    completed = len(re.findall(r"event=login host=app1\.localhost\S* .*result=ok", log))
    assert 1 <= started <= 2 and completed == started, (started, completed)
    names = browser_cookies(result, "app1.localhost")
    assert "_portcullis" in names and not [k for k in names if "_csrf_" in k], names


# 6. a large token: the session cookie is split and reassembled

def test_large_token_session_is_chunked_and_reassembled(env):
    n = len(env["echo"].requests)
    result = Browser(timeout=120).run(login_steps(url(env, "big.localhost", "/big"), "dave")
                                      + [{"expect_status": 200}, {"text": "dave@example.com"}])
    cookies = browser_cookies(result, "big.localhost")
    chunks = sorted((k for k in cookies if re.fullmatch(r"_portcullis_\d+", k)),
                    key=lambda k: int(k.rsplit("_", 1)[1]))
    assert len(chunks) >= 2, sorted(cookies)
    assert chunks == [f"_portcullis_{i}" for i in range(len(chunks))]
    assert "_portcullis" not in cookies
    assert all(len(k) + len(cookies[k]) + 1 <= 4096 for k in chunks)
    total = sum(len(cookies[k]) for k in chunks)
    assert total > 4000, total
    seen = echo_requests(env, n, "dave@example.com")
    assert seen, "the upstream never saw dave"
    groups = seen[-1]["headers"]["x-auth-request-groups"]
    assert BIG_GROUPS[0] in groups and BIG_GROUPS[-1] in groups
    assert "_portcullis" not in seen[-1]["headers"].get("cookie", "")
    # and again from Python with exactly the browser's chunks, through Envoy
    status, _, body = gw(env, "big.localhost", "/again", cookies={k: cookies[k] for k in chunks})
    assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == "dave@example.com"
    # a missing chunk is no session (a login redirect), never a partial one
    status, _, _ = gw(env, "big.localhost", "/again", cookies={k: cookies[k] for k in chunks[:-1]},
                      headers={"Accept": "text/html"})
    assert status == 302
    # sign-out through Envoy on the app's own host clears every chunk, then goes to Keycloak
    status, h, _ = gw(env, "big.localhost", "/oauth2/sign_out?rd=/bye",
                      cookies={k: cookies[k] for k in chunks})
    assert status == 302 and h["Location"].startswith(env["kc"].discovery()["end_session_endpoint"])
    cleared = {k for k, v in set_cookies(h).items() if v is None}
    assert set(chunks) <= cleared, (chunks, cleared)


# 7. the IdP stopped

def start_login_via_envoy(env, host: str, path: str):
    status, headers, _ = gw(env, host, path, headers={"Accept": "text/html"})
    assert status == 302, status
    return headers["Location"], {k: v for k, v in set_cookies(headers).items() if v}


def callback_path(back: str) -> str:
    cb = urllib.parse.urlsplit(back)
    return f"{cb.path}?{cb.query}"


def timed_gw(env, *a, **kw):
    t0 = time.monotonic()
    status, headers, body = gw(env, *a, **kw)
    return {"status": status, "headers": headers, "body": body, "seconds": time.monotonic() - t0}


@pytest.fixture(scope="module")
def idp_down(env):
    """alice has a session on down.localhost; two more logins (bob) got as far as the IdP's
    redirect back to the callback. Then the IdP (oidc-provider) hangs (SIGSTOP: connects, never
    answers) while the first callback arrives, and is stopped (connection refused) before the
    second. Records what the browser would have got, and alice's checks meanwhile."""
    idp = env["idp"]
    n = len(env["echo"].requests)
    result = Browser().run(login_steps(url(env, "down.localhost", "/before"), "alice")
                           + [{"expect_status": 200}, {"text": "alice@example.com"}])
    session = browser_cookies(result, "down.localhost")
    assert "_portcullis" in session
    pending = []
    for i in range(2):
        loc, state = start_login_via_envoy(env, "down.localhost", f"/after/{i}")
        pending.append((callback_path(idp_login(loc, "bob", PASSWORDS["bob"])), state))
    out = {"session": session, "echo_from": n, "checks": []}

    os.kill(idp.proc.pid, signal.SIGSTOP)
    try:
        th = threading.Thread(target=lambda: out.__setitem__("hung", timed_gw(
            env, "down.localhost", pending[0][0], cookies=pending[0][1],
            headers={"Accept": "text/html"})))
        th.start()
        while th.is_alive():
            out["checks"].append(timed_gw(env, "down.localhost", "/while-hung", cookies=session))
            time.sleep(0.1)
        th.join()
    finally:
        os.kill(idp.proc.pid, signal.SIGCONT)
    idp.stop()
    assert not idp.proc.alive()
    out["refused"] = timed_gw(env, "down.localhost", pending[1][0], cookies=pending[1][1],
                              headers={"Accept": "text/html"})
    return out


def test_idp_stopped_existing_sessions_still_pass(env, idp_down):
    checks = idp_down["checks"]
    assert len(checks) >= 5
    assert all(c["status"] == 200 and c["seconds"] < 1 for c in checks), \
        [(c["status"], round(c["seconds"], 3)) for c in checks]
    for _ in range(5):
        c = timed_gw(env, "down.localhost", "/after-stop", cookies=idp_down["session"])
        assert c["status"] == 200 and c["seconds"] < 1
    assert json.loads(c["body"])["headers"]["x-auth-request-email"] == "alice@example.com"
    # a browser without a session is still sent to the IdP's login at once (not a hang)
    c = timed_gw(env, "down.localhost", "/new", headers={"Accept": "text/html"})
    assert c["status"] == 302 and c["headers"]["Location"].startswith(env["idp"].issuer)
    assert c["seconds"] < 1
    # neither half-done login let bob in, and both failed within Envoy's 2 s
    assert not echo_requests(env, idp_down["echo_from"], "bob@example.com")
    assert idp_down["hung"]["status"] >= 400 and idp_down["refused"]["status"] >= 400
    assert idp_down["hung"]["seconds"] < 3 and idp_down["refused"]["seconds"] < 2


def assert_clear_login_error(c: dict, *phrases: str):
    text = c["body"].decode(errors="replace")
    assert c["seconds"] < 2, f"the failed login took {c['seconds']:.1f}s (Envoy gives up after 2s)"
    assert 400 <= c["status"] < 500, (c["status"], text[:300])
    assert c["headers"].get("Content-Type", "").startswith("text/html")
    for p in phrases:
        assert p in text, text[:500]


def test_idp_stopped_new_login_gets_clear_error_page_through_envoy(idp_down):
    assert_clear_login_error(idp_down["refused"], "identity provider", "did not answer")


def test_idp_hanging_new_login_gets_clear_error_page_through_envoy(idp_down):
    assert_clear_login_error(idp_down["hung"], "identity provider", "did not answer")


# 8. a bad config written while serving

def test_bad_config_keeps_old_config_serving(env, alice_app1):
    authd = env["authd"]
    fail = 'portcullis_authd_config_reloads_total{result="failure"}'
    ok = 'portcullis_authd_config_reloads_total{result="success"}'
    fail0, ok0 = authd.metric(fail), authd.metric(ok)
    good = authd_config(authd.c)
    try:
        # an unknown key and a host that takes app1.localhost over with other groups: both rejected
        authd.write_config(good + "  - id: test/takeover\n    hosts: [app1.localhost]\n"
                                  f"    oidc: {{issuerURL: \"{authd.c['kc_issuer']}\", clientID: x}}\n"
                                  "    surprise: true\n")
        authd.wait_metric(fail, fail0 + 1)
        status, _, body = gw(env, "app1.localhost", "/after-bad-config", cookies=alice_app1["cookies"])
        assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == "alice@example.com"
        assert gw(env, "app1.localhost", "/", headers={"Accept": "text/html"})[0] == 302
        # garbage that is not even YAML
        authd.write_config("hosts: [\n  {{{ not yaml")
        authd.wait_metric(fail, fail0 + 2)
        assert gw(env, "app1.localhost", "/x", cookies=alice_app1["cookies"])[0] == 200
        assert authd.metric(ok) == ok0
        assert re.search(r'^portcullis_authd_config_reloads_total\{result="failure"\} [1-9]',
                         authd.metrics(), re.M)
        assert authd.proc.alive()
    finally:
        authd.write_config(good + "\n")
        authd.wait_metric(ok, ok0 + 1)
    assert gw(env, "app1.localhost", "/y", cookies=alice_app1["cookies"])[0] == 200


# 9. API requests get 401, browsers a redirect

def test_api_request_without_session_is_401_browser_is_302(env):
    kc = env["kc"]
    for headers, path in (({"Accept": "application/json"}, "/data"),
                          ({"Accept": "text/html"}, "/api/items"),
                          ({"Accept": "*/*", "X-Requested-With": "XMLHttpRequest"}, "/data")):
        status, h, body = gw(env, "app1.localhost", path, headers=headers)
        assert status == 401, (headers, path, status)
        assert h["WWW-Authenticate"].startswith("Bearer")
        assert h.get("Location") is None and not set_cookies(h)
    status, h, body = gw(env, "app1.localhost", "/data", headers={"Accept": "application/json"})
    assert h.get("Content-Type", "").startswith("application/json"), h.get("Content-Type")
    status, h, _ = gw(env, "app1.localhost", "/page?a=1", headers={
        "Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"})
    assert status == 302
    loc = h["Location"]
    assert loc.startswith(kc.discovery()["authorization_endpoint"] + "?")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert q["redirect_uri"] == [url(env, "app1.localhost", "/oauth2/callback")]
    assert q["code_challenge_method"] == ["S256"] and q["client_id"] == [KC_CLIENT]
    assert any("_csrf_" in k for k in set_cookies(h))


# 10. bearer tokens from client_credentials

def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    i = len(sig) // 2
    sig = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
    return ".".join((head, payload, sig))


def test_bearer_tokens_client_credentials(env):
    kc = env["kc"]
    token = kc.token_client_credentials("robot", "robot-secret")["access_token"]
    claims = peers.jwt_claims(token)
    assert API_AUDIENCE in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])
    n = len(env["echo"].requests)
    status, h, body = gw(env, "api.localhost", "/v1/orders", headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json"})
    assert status == 200, body[:300]
    up = json.loads(body)["headers"]
    assert up["x-auth-request-user"] == claims["sub"]
    assert up["authorization"] == f"Bearer {token}"
    assert len(echo_requests(env, n)) == 1

    for bad in (tamper(token), token[:-10]):
        status, h, body = gw(env, "api.localhost", "/v1/orders", headers={
            "Authorization": f"Bearer {bad}", "Accept": "application/json"})
        assert status == 401, (status, body[:200])
        assert 'error="invalid_token"' in h["WWW-Authenticate"]
    # a valid token of the same issuer but for another audience
    other = kc.token_client_credentials("robot2", "robot2-secret")["access_token"]
    status, h, _ = gw(env, "api.localhost", "/v1/orders", headers={"Authorization": f"Bearer {other}"})
    assert status == 401 and 'error="invalid_token"' in h["WWW-Authenticate"]
    assert len(echo_requests(env, n)) == 1
