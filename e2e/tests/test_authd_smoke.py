"""Fast local smoke test of portcullis-authd against a real OpenID Provider (npm oidc-provider,
e2e/harness/peers.py OidcProvider). No Envoy/nginx/Chromium: Python plays the proxy and the
browser, sending exactly what Envoy's ext_authz / nginx auth_request would send.

The binary is not built here: env PORTCULLIS_AUTHD, default build/authd/portcullis-authd.
Run:  python3 -m pytest e2e/tests/test_authd_smoke.py      (< 60 s)
"""
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness.authd import Authd, config_head, idp_login, publish_volume, set_cookies  # noqa: E402
from e2e.harness.peers import DEFAULT_USERS, OidcProvider  # noqa: E402
from e2e.harness.proc import AUTHD, Proc, free_port, skip_e2e, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

CLIENT, SECRET = "echo", "echo-client-secret"
OTHER, OTHER_SECRET = "other", "other-client-secret"  # a second client of the same IdP


def config_yaml(c, extra_hosts=""):
    return config_head(c) + f"""\
hosts:
  - id: test/echo
    hosts: [echo.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
    access: {{allowedGroups: [admins]}}
    paths: {{skip: [/public/], api: [/api/]}}
  - id: test/refresh
    hosts: [refresh.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
    session: {{refresh: 1s}}
  - id: test/email
    hosts: [email.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
    access: {{allowedEmails: [ceo@corp.example.com], allowedEmailDomains: [example.com]}}
  - id: test/email-lax
    hosts: [email-lax.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
    access: {{allowedEmails: [ceo@corp.example.com], allowUnverifiedEmail: true}}
  - id: test/other
    hosts: [other.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {OTHER}, clientSecret: {OTHER_SECRET}}}
{extra_hosts}"""

# An account whose email address the IdP has not verified (anyone can type the CEO's).
MALLORY = {"username": "mallory", "password": "mallory-password", "email": "ceo@corp.example.com",
           "emailVerified": False, "firstName": "Mal", "lastName": "Lory", "groups": []}


class SmokeAuthd(Authd):
    """The daemon (debug log, ready once /healthz answers) plus a tiny client that speaks like
    Envoy / nginx / a browser."""

    def __init__(self, issuer: str):
        super().__init__("authd-smoke", config_yaml, args=("--log-level", "debug"), issuer=issuer,
                         cookie_secret="0123456789abcdef0123456789abcdef-smoke-test\n")

    def start(self):
        return super().start("/healthz", 10)

    def request(self, path, host="echo.localhost", cookies=None, headers=None, method="GET",
                admin=False, timeout=15):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin if admin else self.port,
                                          timeout=timeout)
        h = {"Host": f"{host}:{self.port}" if host else "", "X-Forwarded-Proto": "http"}
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        h.update(headers or {})
        try:
            conn.request(method, path, headers=h)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        return r.status, r.getheaders(), body


def header(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if vals else None


def apply_cookies(jar: dict, headers) -> dict:
    for k, v in set_cookies(headers).items():
        if v is None:
            jar.pop(k, None)
        else:
            jar[k] = v
    return jar


def start_login(authd, host="echo.localhost", path="/ext-authz/app/page?x=1"):
    """A browser hits a protected page: returns (IdP URL, cookie jar with the state cookie)."""
    status, headers, _ = authd.request(path, host=host, headers={"Accept": "text/html"})
    assert status == 302, status
    jar = apply_cookies({}, headers)
    assert any(k.startswith("_portcullis_csrf_") for k in jar), headers
    return header(headers, "Location"), jar


def login(authd, user, password, host="echo.localhost"):
    """The full code flow through the Envoy door; returns the session cookie jar."""
    loc, jar = start_login(authd, host)
    back = idp_login(loc, user, password)
    cb = urllib.parse.urlsplit(back)
    status, headers, body = authd.request(f"/ext-authz{cb.path}?{cb.query}", host=host, cookies=jar)
    assert status == 302, (status, body)
    assert header(headers, "Location") == f"http://{host}:{authd.port}/app/page?x=1"
    apply_cookies(jar, headers)
    assert "_portcullis" in jar and not any(k.startswith("_portcullis_csrf_") for k in jar)
    return jar


@pytest.fixture(scope="module")
def env():
    # The IdP must know authd's callback URLs before it starts, so pick authd's ports first.
    idp_port = free_port()
    authd = SmokeAuthd(f"http://127.0.0.1:{idp_port}")
    redirect_uris = [f"http://{h}:{authd.port}/oauth2/callback"
                     for h in ("echo.localhost", "refresh.localhost", "email.localhost",
                               "email-lax.localhost")]
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET, "redirectUris": redirect_uris,
                         "postLogoutRedirectUris": [f"http://echo.localhost:{authd.port}/"]},
                        {"clientId": OTHER, "secret": OTHER_SECRET,
                         "redirectUris": [f"http://other.localhost:{authd.port}/oauth2/callback"]}],
                       DEFAULT_USERS + [MALLORY], port=idp_port)
    try:
        idp.start()
        authd.start()
        yield {"idp": idp, "authd": authd}
    finally:
        authd.stop()
        idp.stop()  # also continues it when a test left it stopped (SIGSTOP)


@pytest.fixture(scope="module")
def alice(env):
    return login(env["authd"], "alice", "alice-password")


# --- config checking ----------------------------------------------------------------------

def test_check_config_reports_file_line_col(tmp_path):
    assert AUTHD.exists(), f"build portcullis-authd first (or set PORTCULLIS_AUTHD): {AUTHD}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:1\nhosts:\n  - id: x\n    hosts: [Not A Host]\n")
    r = subprocess.run([AUTHD, "--config", bad, "--check-config"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: \S", r.stderr, re.M), r.stderr
    r = subprocess.run([AUTHD, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "portcullis-authd" in r.stdout


def test_check_config_refuses_colliding_cookies(tmp_path):
    """A shared cookie of one client over another client's host on the same cookie name."""
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    cfg = tmp_path / "collide.yaml"
    cfg.write_text(f"""cookieSecretFiles: [{secret}]
hosts:
  - id: portal/shared
    hosts: [portal.example.com]
    oidc: {{issuerURL: https://idp.example.com, clientID: portal}}
    session: {{cookieDomain: .example.com}}
  - id: team/app
    hosts: [app.example.com]
    oidc: {{issuerURL: https://idp.example.com, clientID: app}}
""")
    r = subprocess.run([AUTHD, "--config", cfg, "--check-config"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r.stdout
    assert 'host "app.example.com" also receives cookie "_portcullis" of hosts[0]' in r.stderr
    assert "another session.cookieName" in r.stderr


def test_check_config_ok(env):
    r = subprocess.run([AUTHD, "--config", env["authd"].config, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "config ok" in r.stdout, r.stderr


# --- admin port ---------------------------------------------------------------------------

def test_healthz_and_readyz_turn_200(env):
    authd = env["authd"]
    assert authd.request("/healthz", admin=True)[0] == 200
    deadline = time.monotonic() + 10
    while authd.request("/readyz", admin=True)[0] != 200:
        assert time.monotonic() < deadline, "readyz never turned 200 (discovery/JWKS)"
        time.sleep(0.1)
    # admin paths are not served on the auth port
    assert authd.request("/metrics", host=None)[0] == 404
    assert "portcullis_authd_build_info" in authd.metrics()


# --- decisions without a session ------------------------------------------------------------

def test_unknown_host_is_403(env):
    status, headers, body = env["authd"].request("/ext-authz/", host="nope.localhost")
    assert status == 403


def test_browser_without_session_redirects_to_idp_with_state_cookie(env):
    loc, jar = start_login(env["authd"])
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert loc.startswith(env["idp"].discovery()["authorization_endpoint"])
    assert q["client_id"] == [CLIENT] and q["code_challenge_method"] == ["S256"]
    assert q["redirect_uri"] == [f"http://echo.localhost:{env['authd'].port}/oauth2/callback"]
    assert "openid" in q["scope"][0].split()


@pytest.mark.parametrize("headers,path", [
    ({"Accept": "application/json"}, "/ext-authz/data"),
    ({"X-Requested-With": "XMLHttpRequest"}, "/ext-authz/data"),
    ({"Accept": "text/html", "Sec-Fetch-Mode": "cors"}, "/ext-authz/data"),
    ({"Accept": "text/html"}, "/ext-authz/api/x"),
])
def test_api_and_xhr_get_401(env, headers, path):
    status, h, _ = env["authd"].request(path, headers=headers)
    assert status == 401 and header(h, "WWW-Authenticate")


def test_skip_path_is_allowed_without_session(env):
    assert env["authd"].request("/ext-authz/public/logo.png")[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_any_method_reaches_the_envoy_door(env, method):
    status, _, _ = env["authd"].request("/ext-authz/data", method=method,
                                        headers={"Accept": "application/json"})
    assert status == 401


# --- login and sessions ----------------------------------------------------------------------

def test_code_flow_then_envoy_door_allows_with_identity_headers(env, alice):
    status, h, _ = env["authd"].request("/ext-authz/app", cookies=alice)
    assert status == 200
    assert header(h, "X-Auth-Request-Email") == "alice@example.com"
    assert header(h, "X-Auth-Request-User") == "alice"
    assert "admins" in header(h, "X-Auth-Request-Groups")


def test_client_sent_identity_header_is_overwritten(env, alice):
    status, h, _ = env["authd"].request("/ext-authz/app", cookies=alice,
                                        headers={"X-Auth-Request-Email": "mallory@evil.example"})
    assert status == 200 and header(h, "X-Auth-Request-Email") == "alice@example.com"


def test_nginx_door(env, alice):
    authd = env["authd"]
    hdrs = {"X-Forwarded-Host": f"echo.localhost:{authd.port}", "X-Original-URI": "/app?y=2"}
    status, h, _ = authd.request("/oauth2/auth", host="authd.internal", cookies=alice, headers=hdrs)
    assert status == 202 and header(h, "X-Auth-Request-Email") == "alice@example.com"
    status, _, _ = authd.request("/oauth2/auth", host="authd.internal", headers=hdrs)
    assert status == 401
    # ingress-nginx style: only X-Original-URL
    url = {"X-Original-URL": f"https://echo.localhost:{authd.port}/app?y=2"}
    status, h, _ = authd.request("/oauth2/auth", host="authd.internal", cookies=alice, headers=url)
    assert status == 202 and header(h, "X-Auth-Request-User") == "alice"


def test_userinfo(env, alice):
    status, _, body = env["authd"].request("/oauth2/userinfo", cookies=alice)
    assert status == 200
    info = json.loads(body)
    assert info["email"] == "alice@example.com" and "admins" in info["groups"]
    assert env["authd"].request("/oauth2/userinfo")[0] == 401


def test_user_outside_allowed_groups_is_403(env):
    bob = login(env["authd"], "bob", "bob-password")
    status, h, _ = env["authd"].request("/ext-authz/app", cookies=bob)
    assert status == 403 and header(h, "X-Auth-Request-Email") is None


def test_unverified_email_passes_no_email_rule(env):
    """email_verified: false from a real IdP: the email rules of the host do not match and the
    app never sees the address; a verified user of the allowed domain still gets in."""
    authd = env["authd"]
    mallory = login(authd, "mallory", "mallory-password", host="email.localhost")
    status, h, body = authd.request("/ext-authz/app", host="email.localhost", cookies=mallory)
    assert status == 403, body
    wait_for("the refusal logged", lambda: "reason=email-unverified" in authd.log(), 10)
    alice = login(authd, "alice", "alice-password", host="email.localhost")
    status, h, _ = authd.request("/ext-authz/app", host="email.localhost", cookies=alice)
    assert status == 200 and header(h, "X-Auth-Request-Email") == "alice@example.com"
    status, _, body = authd.request("/oauth2/userinfo", host="email.localhost", cookies=mallory)
    assert status == 200 and json.loads(body).get("email") is None


def test_allow_unverified_email_opts_out(env):
    authd = env["authd"]
    mallory = login(authd, "mallory", "mallory-password", host="email-lax.localhost")
    status, h, _ = authd.request("/ext-authz/app", host="email-lax.localhost", cookies=mallory)
    assert status == 200 and header(h, "X-Auth-Request-Email") == "ceo@corp.example.com"


def test_another_clients_cookie_of_the_same_name_is_skipped(env, alice):
    """The browser sends another client's session cookie of the same name too (a sibling's
    shared cookie, or one a sibling subdomain planted): authd finds the host's own."""
    authd = env["authd"]
    theirs = login(authd, "bob", "bob-password", host="other.localhost")["_portcullis"]
    for cookie in (f"_portcullis={theirs}; _portcullis={alice['_portcullis']}",
                   f"_portcullis={alice['_portcullis']}; _portcullis={theirs}"):
        status, h, _ = authd.request("/ext-authz/app", headers={"Cookie": cookie})
        assert status == 200 and header(h, "X-Auth-Request-User") == "alice"
    status, _, _ = authd.request("/ext-authz/app", headers={"Cookie": f"_portcullis={theirs}",
                                                            "Accept": "text/html"})
    assert status == 302  # only the other client's: log in here


def test_parallel_logins_in_two_tabs(env):
    authd = env["authd"]
    loc1, jar1 = start_login(authd)
    loc2, jar2 = start_login(authd, path="/ext-authz/other")
    jar = {**jar1, **jar2}  # one browser: both state cookies
    for loc in (loc2, loc1):
        cb = urllib.parse.urlsplit(idp_login(loc, "alice", "alice-password"))
        status, h, _ = authd.request(f"/ext-authz{cb.path}?{cb.query}", cookies=jar)
        assert status == 302, status
        apply_cookies(jar, h)
    assert authd.request("/ext-authz/app", cookies=jar)[0] == 200


def test_hostile_state_cookie_names_do_not_crash_authd(env):
    """State-cookie names come from the client: a 600-byte one with a value that passes the
    length checks reaches the login-state pruning on every login redirect."""
    authd = env["authd"]
    value = base64.urlsafe_b64encode(b"\x01" + bytes(40)).decode().rstrip("=")
    for n in (600, 4000):
        status, headers, _ = authd.request(
            "/ext-authz/app", headers={"Accept": "text/html"},
            cookies={"_portcullis_csrf_" + "A" * n: value})
        assert status == 302
        # Not authd's cookie: nothing is cleared, only the new state cookie is set.
        assert [k for k in set_cookies(headers)] == [k for k in set_cookies(headers)
                                                     if len(k) == len("_portcullis_csrf_") + 12]
    assert authd.request("/healthz", admin=True)[0] == 200
    assert authd.proc.alive()


def test_callback_with_bad_state_is_400(env):
    status, _, body = env["authd"].request("/ext-authz/oauth2/callback?code=x&state=forged")
    assert status == 400 and b"Sign-in failed" in body


def test_refresh_happens_off_the_request_path(env):
    authd = env["authd"]
    jar = login(authd, "carol", "carol-password", host="refresh.localhost")
    time.sleep(1.2)
    t0 = time.monotonic()
    status, h, _ = authd.request("/ext-authz/x", host="refresh.localhost", cookies=jar)
    assert status == 200 and time.monotonic() - t0 < 2  # from the old session, not after the 5 s IdP timeout
    deadline = time.monotonic() + 5
    while True:
        status, h, _ = authd.request("/ext-authz/x", host="refresh.localhost", cookies=jar)
        assert status == 200
        if "_portcullis" in set_cookies(h):
            break
        assert time.monotonic() < deadline, "refreshed cookie never came back"
        time.sleep(0.1)
    apply_cookies(jar, h)
    status, h, _ = authd.request("/ext-authz/x", host="refresh.localhost", cookies=jar)
    assert status == 200 and header(h, "X-Auth-Request-Email") == "carol@example.com"
    assert authd.metric('portcullis_authd_idp_requests_total{issuer="%s",kind="refresh",result="ok"}'
                        % env["idp"].issuer) >= 1


def test_sign_out_clears_cookies_and_goes_to_end_session(env):
    authd = env["authd"]
    jar = login(authd, "alice", "alice-password")
    status, h, _ = authd.request("/oauth2/sign_out?rd=/", cookies=jar)
    assert status == 302
    assert header(h, "Location").startswith(env["idp"].discovery()["end_session_endpoint"])
    cleared = set_cookies(h)
    assert cleared.get("_portcullis", "x") is None


def test_metrics_count_decisions(env, alice):
    authd = env["authd"]
    before = authd.metric('portcullis_authd_decisions_total{host="test/echo",door="envoy",outcome="allow"}')
    authd.request("/ext-authz/app", cookies=alice)
    after = authd.metric('portcullis_authd_decisions_total{host="test/echo",door="envoy",outcome="allow"}')
    assert after == before + 1
    assert "portcullis_authd_check_duration_seconds_bucket" in authd.metrics()


def test_logs_never_contain_cookie_values(env, alice):
    log = env["authd"].log()
    assert "event=check" in log
    assert alice["_portcullis"][:40] not in log
    assert SECRET not in log


# --- reload ----------------------------------------------------------------------------------

def test_bad_config_while_serving_keeps_old_config(env, alice):
    authd = env["authd"]
    fail0 = authd.metric('portcullis_authd_config_reloads_total{result="failure"}')
    ok0 = authd.metric('portcullis_authd_config_reloads_total{result="success"}')
    good = authd.config.read_text()
    authd.write_config(good + "  - id: broken\n    hosts: [BAD HOST]\n")
    authd.wait_metric('portcullis_authd_config_reloads_total{result="failure"}', fail0 + 1, timeout=8)
    assert authd.request("/ext-authz/app", cookies=alice)[0] == 200
    assert "event=config_reload" in authd.log()
    # a good change is picked up: a new host appears
    extra = f"""  - id: test/new
    hosts: [new.localhost]
    oidc: {{issuerURL: "{env['idp'].issuer}", clientID: {CLIENT}, clientSecret: {SECRET}}}
"""
    assert authd.request("/ext-authz/", host="new.localhost")[0] == 403
    authd.write_config(config_yaml(authd.c, extra))
    authd.wait_metric('portcullis_authd_config_reloads_total{result="success"}', ok0 + 1, timeout=8)
    assert authd.request("/ext-authz/", host="new.localhost", headers={"Accept": "text/html"})[0] == 302
    assert authd.request("/ext-authz/app", cookies=alice)[0] == 200


# --- first boot: the config Secret is mounted optional and not written yet ------------------

def test_starts_without_config_file_and_serves_once_it_appears(env, tmp_path):
    idp = env["idp"]
    port, admin = free_port(), free_port()
    secret = tmp_path / "cookie-secret"
    secret.write_text("0123456789abcdef0123456789abcdef-first-boot\n")
    volume = tmp_path / "config"  # does not exist yet, like an unfilled volume
    config = volume / "config.yaml"
    r = subprocess.run([AUTHD, "--config", config, "--check-config"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and str(config) in r.stderr
    proc = Proc("authd-first-boot", [AUTHD, "--config", config, "--listen", f"127.0.0.1:{port}",
                                     "--admin-listen", f"127.0.0.1:{admin}",
                                     "--cookie-secret-file", secret],
                log_path=tmp_path / "authd.log").start()
    try:
        proc.wait_http(f"http://127.0.0.1:{admin}/healthz", 10, ok=lambda s: s == 200)

        def get(path, p=port, host="echo.localhost", accept="application/json"):
            conn = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
            conn.request("GET", path, headers={"Host": host, "Accept": accept})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return resp.status, body

        status, body = get("/readyz", admin)
        assert status == 503 and b"config file not found" in body
        assert get("/ext-authz/app")[0] == 503
        assert get("/oauth2/auth")[0] == 503
        assert "config file does not exist" in (tmp_path / "authd.log").read_text()

        text = f"""hosts:
  - id: test/echo
    hosts: [echo.localhost]
    oidc: {{issuerURL: "{idp.issuer}", clientID: {CLIENT}, clientSecret: {SECRET}}}
    paths: {{skip: [/public/]}}
allowInsecureIssuers: true
cookieSecretFiles: [/nonexistent/overridden-by-the-flag]
"""
        publish_volume(volume, {"config.yaml": text})
        deadline = time.monotonic() + 10
        while get("/ext-authz/app")[0] != 401:
            assert time.monotonic() < deadline, "the config that appeared was never loaded"
            time.sleep(0.1)
        assert get("/ext-authz/public/x")[0] == 200
        assert get("/ext-authz/app", host="other.localhost")[0] == 403
        while get("/readyz", admin)[0] != 200:
            assert time.monotonic() < deadline + 10, "readyz never turned 200"
            time.sleep(0.1)
        # the next Secret update (another ..data swap) adds a host
        publish_volume(volume, {"config.yaml": text.replace("[echo.localhost]",
                                                            "[echo.localhost, other.localhost]")})
        deadline = time.monotonic() + 10
        while get("/ext-authz/app", host="other.localhost")[0] != 401:
            assert time.monotonic() < deadline, "the ..data swap was never loaded"
            time.sleep(0.1)
    finally:
        proc.stop()
    assert proc.popen.returncode == 0


# --- the IdP goes away -----------------------------------------------------------------------

def test_idp_down_sessions_still_work_and_login_fails_fast(env, alice):
    authd, idp = env["authd"], env["idp"]
    # two logins get as far as the IdP's redirect back, then the IdP hangs / dies
    codes = []
    for _ in range(2):
        loc, jar = start_login(authd)
        cb = urllib.parse.urlsplit(idp_login(loc, "alice", "alice-password"))
        codes.append((f"/ext-authz{cb.path}?{cb.query}", jar))

    os.kill(idp.proc.pid, signal.SIGSTOP)  # hangs: accepts TCP, never answers
    try:
        result = {}

        def callback():
            t0 = time.monotonic()
            result["r"] = authd.request(codes[0][0], cookies=codes[0][1], timeout=20)
            result["t"] = time.monotonic() - t0

        th = threading.Thread(target=callback)
        th.start()
        time.sleep(0.3)
        # meanwhile sessions are answered at once
        for _ in range(20):
            t0 = time.monotonic()
            assert authd.request("/ext-authz/app", cookies=alice)[0] == 200
            assert time.monotonic() - t0 < 1  # not held up by the 1.5 s exchange
        th.join(15)
        status, _, body = result["r"]
        # Through the Envoy door authd never answers 5xx (Envoy would hide the page) and
        # gives up on the IdP before Envoy's 2 s check timeout.
        assert status == 401 and b"did not answer" in body, (status, body)
        assert result["t"] < 2
    finally:
        os.kill(idp.proc.pid, signal.SIGCONT)
    idp.stop()  # now it is gone: connection refused
    t0 = time.monotonic()
    status, _, body = authd.request(codes[1][0], cookies=codes[1][1])
    assert status == 401 and b"Sign-in failed" in body and time.monotonic() - t0 < 2
    assert authd.request("/ext-authz/app", cookies=alice)[0] == 200


@pytest.mark.parametrize("proto,secure", [("http", False), ("https", True), (None, True),
                                          ("HTTP", True), ("http, https", True)])
def test_secure_cookie_rule(env, proto, secure):
    """Secure is left out only when the gateway says the browser came over plain http."""
    hdrs = {"Accept": "text/html"}
    if proto is not None:
        hdrs["X-Forwarded-Proto"] = proto
    conn = http.client.HTTPConnection("127.0.0.1", env["authd"].port, timeout=10)
    if proto is None:
        conn.putrequest("GET", "/ext-authz/app", skip_host=True)
        conn.putheader("Host", f"echo.localhost:{env['authd'].port}")
        conn.putheader("Accept", "text/html")
        conn.endheaders()
    else:
        conn.request("GET", "/ext-authz/app", headers={"Host": f"echo.localhost:{env['authd'].port}", **hdrs})
    r = conn.getresponse()
    r.read()
    conn.close()
    cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
    assert r.status == 302 and cookies
    assert all(("; Secure" in c) == secure for c in cookies), cookies


# --- request parsing: what authd decides on is what the upstream gets ------------------------

def raw_exchange(authd, data: bytes, timeout=5) -> bytes:
    """Sends bytes as-is on one connection and reads until authd closes it."""
    import socket
    s = socket.create_connection(("127.0.0.1", authd.port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    return out


def statuses(reply: bytes) -> list:
    return [int(m) for m in re.findall(rb"^HTTP/1\.1 (\d{3}) ", reply, re.M)]


def raw_check(authd, target: str) -> int:
    req = (f"GET {target} HTTP/1.1\r\nHost: echo.localhost:{authd.port}\r\n"
           "Accept: application/json\r\nConnection: close\r\n\r\n").encode()
    return statuses(raw_exchange(authd, req))[0]


# Envoy forwards the original path (normalize_path leaves "..%2f", ";" and "%2e%2e%2f" alone);
# the upstream may route "/admin/..%2fpublic/x" to /admin. None of these may skip the login.
@pytest.mark.parametrize("path", [
    "/admin/..%2fpublic/x", "/admin/..%2Fpublic/x", "/admin/%2e%2e/public/x",
    "/admin/.%2e/public/x", "/admin/../public/x", "/public/..;/admin", "/public/;/../admin",
    "/public/&/../admin", "/public/%2e%2e/admin", "/public/%252e%252e/admin",
    "/admin%3f/../public/x", "/admin%23/../public/x", "//public/x", "/./public/x",
])
def test_skip_path_never_covers_a_protected_path(env, path):
    authd = env["authd"]
    assert raw_check(authd, "/ext-authz/public/logo.png") == 200
    assert raw_check(authd, f"/ext-authz{path}") == 401, path


@pytest.mark.parametrize("head", [
    "GET /ext-authz/public/x HTTP/1.1\r\nHost: echo.localhost\r\nHost: other.localhost\r\n",
    "POST /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nContent-Length: 1\r\n"
    "Transfer-Encoding: chunked\r\n",
    "GET /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nX-Auth: a\r\n b\r\n",
    "GET /ext-authz/x HTTP/1.1\r\nHost : echo.localhost\r\n",
    "GET /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\nCookie: a=1\r\n",
    "GET /ext-authz/x#frag HTTP/1.1\r\nHost: echo.localhost\r\n",
    # RFC 9112 §3.2: no Host, or one that is not a host[:port]
    "GET /ext-authz/x HTTP/1.1\r\nAccept: application/json\r\n",
    "GET /ext-authz/x HTTP/1.1\r\nHost: evil@echo.localhost\r\n",
    # Transfer-Encoding other than a lone chunked
    "POST /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nTransfer-Encoding: gzip\r\n",
    "POST /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nTransfer-Encoding: chunked, chunked\r\n",
    "POST /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nTransfer-Encoding: chunked\r\n"
    "Transfer-Encoding: chunked\r\n",
    "POST /ext-authz/x HTTP/1.0\r\nHost: echo.localhost\r\nTransfer-Encoding: chunked\r\n",
])
def test_ambiguous_requests_get_400_and_close(env, head):
    reply = raw_exchange(env["authd"], (head + "\r\n").encode())
    assert statuses(reply) == [400] and b"connection: close" in reply.lower()


def test_unimplemented_transfer_coding_gets_501_and_close(env):
    head = ("POST /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\n"
            "Transfer-Encoding: gzip, chunked\r\n\r\n")
    reply = raw_exchange(env["authd"], head.encode())
    assert statuses(reply) == [501] and b"connection: close" in reply.lower()


def test_head_trickled_a_byte_per_segment_is_answered(env):
    """Resuming the head scan across reads: a head sent one byte per send() (Nagle off), then a
    pipelined second request, gets both answers."""
    import socket
    authd = env["authd"]
    h = f"Host: echo.localhost:{authd.port}\r\nAccept: application/json\r\n"
    first = (f"GET /ext-authz/x HTTP/1.1\r\n{h}X-Pad: {'p' * 2000}\r\n\r\n").encode()
    second = f"GET /ext-authz/public/a HTTP/1.1\r\n{h}Connection: close\r\n\r\n".encode()
    s = socket.create_connection(("127.0.0.1", authd.port), timeout=15)
    out = b""
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(first)):
            s.sendall(first[i:i + 1])
        s.sendall(second)
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    assert statuses(out) == [401, 200]


def test_a_head_that_never_completes_is_closed_by_the_head_timeout(env):
    """A client that sends part of a head and stops (slowloris) is disconnected by the 15 s
    head timeout, not held for the 300 s keep-alive — on the epoll loop, where the keep-alive
    timeout is set first (server.c, tick). The socket's own 60 s bound is the failure."""
    import socket
    authd = env["authd"]
    s = socket.create_connection(("127.0.0.1", authd.port), timeout=60)
    try:
        s.sendall(f"GET /ext-authz/x HTTP/1.1\r\nHost: echo.localhost:{authd.port}\r\n".encode())
        assert s.recv(65536) == b""  # closed, nothing answered; socket.timeout after 60 s
    finally:
        s.close()
    assert "event_loop=epoll" in authd.proc.log_path.read_text()


def test_oversized_head_gets_431(env):
    head = f"GET /ext-authz/x HTTP/1.1\r\nHost: echo.localhost\r\nX-Pad: {'a' * 70000}\r\n\r\n"
    assert statuses(raw_exchange(env["authd"], head.encode())) == [431]


def test_keep_alive_skips_bodies_and_serves_pipelined_requests(env):
    authd = env["authd"]
    h = f"Host: echo.localhost:{authd.port}\r\nAccept: application/json\r\n"
    data = (f"POST /ext-authz/x HTTP/1.1\r\n{h}Content-Length: 11\r\n\r\nGET / HTTP/1.1"
            f"GET /ext-authz/public/a HTTP/1.1\r\n{h}\r\n"
            f"GET /ext-authz/x HTTP/1.1\r\n{h}Connection: close\r\n\r\n").encode()
    assert statuses(raw_exchange(authd, data)) == [401, 200, 401]


# --- shutdown --------------------------------------------------------------------------------

def test_sigterm_exits_zero(env):
    p = env["authd"].proc.popen
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=15) == 0
