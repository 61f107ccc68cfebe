"""The pages people see when authd answers instead of the app (issue 11, item 4), read in
headless Chromium through real Envoy (configured as istiod renders the mesh provider), with
the npm oidc-provider as the IdP:

  pages.localhost   IdP with RP-initiated logout (end_session_endpoint), allowedGroups [admins]
  plain.localhost   IdP without end_session_endpoint, anyone

bob (staff) is refused on pages.localhost: the 403 page names his account, the host and a
request id that authd's log line for that decision also has, and its sign-out link ends the
IdP session so that alice can sign in instead. A failed login and the signed-out page (no
end_session, no rd) are read the same way; an operator templates directory, published the way
kubelet fills a ConfigMap volume, replaces the 403 page. Screenshots (PNG, 1280 and 320 px
wide) go to the module's work dir, e2e/.work/authd-pages-shots-*/.

The binary is not built here: env PORTCULLIS_AUTHD, default build/authd/portcullis-authd.
Run:  python3 -m pytest e2e/tests/test_authd_pages.py          (< 1 min)
"""
from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness.authd import Authd, config_head, idp_login, mesh_provider, publish_volume, set_cookies  # noqa: E402
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.peers import DEFAULT_USERS, Browser, Echo, OidcProvider  # noqa: E402
from e2e.harness.proc import free_port, http, skip_e2e, work_dir  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

HOSTS = ["pages.localhost", "plain.localhost"]
# An account whose email claim holds markup (IdPs with self-service profiles let users pick it).
MALLORY = {"username": "mallory", "password": "mallory-password",
           "email": "<img src=x onerror=\"document.title='pwned'\">@example.com", "groups": []}
USERS = DEFAULT_USERS + [MALLORY]
PASSWORDS = {u["username"]: u["password"] for u in USERS}
REQUEST_ID = r"[0-9a-hjkmnp-tv-z]{10}"


def authd_config(c: dict) -> str:
    templates = f"templatesDir: {c['templates']}\n" if c.get("templates") else ""
    return config_head(c) + templates + f"""\
hosts:
  - id: test/pages
    hosts: [pages.localhost]
    oidc: {{issuerURL: "{c['idp']}", clientID: pages, clientSecret: pages-secret}}
    access: {{allowedGroups: [admins]}}
  - id: test/plain
    hosts: [plain.localhost]
    oidc: {{issuerURL: "{c['idp2']}", clientID: plain, clientSecret: plain-secret}}
"""


@pytest.fixture(scope="module")
def env():
    envoy_port = free_port()
    pages, plain = (f"http://{h}:{envoy_port}" for h in HOSTS)
    idp = OidcProvider([{"clientId": "pages", "secret": "pages-secret",
                         "redirectUris": [f"{pages}/oauth2/callback"],
                         "postLogoutRedirectUris": [f"{pages}/"]}], users=USERS)
    idp2 = OidcProvider([{"clientId": "plain", "secret": "plain-secret",
                          "redirectUris": [f"{plain}/oauth2/callback"]}], end_session=False)
    authd = Authd("authd-pages", authd_config, idp=idp.issuer, idp2=idp2.issuer,
                  cookie_secret="pages-test-cookie-secret-0123456789abcdef\n")
    echo = Echo()
    envoy = Envoy(mesh_provider(authd.port), echo, hosts=HOSTS, port=envoy_port)
    started = []
    try:
        for peer in (echo, idp, idp2, envoy, authd):
            started.append(peer)
            peer.start(**({"ready": "/readyz", "timeout": 30} if peer is authd else {}))
        yield {"idp": idp, "idp2": idp2, "authd": authd, "echo": echo, "envoy": envoy,
               "shots": work_dir("authd-pages-shots")}
    finally:
        for peer in reversed(started):
            peer.stop()


def url(env, host: str, path: str = "/") -> str:
    return f"http://{host}:{env['envoy'].port}{path}"


def gw(env, host: str, path: str = "/", *, headers: dict | None = None, cookies: dict | None = None):
    port = env["envoy"].port
    h = {"Host": f"{host}:{port}", **(headers or {})}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return http("GET", f"http://127.0.0.1:{port}{path}", headers=h, timeout=15)


def login_steps(start: str, user: str) -> list:
    return [{"goto": start}, {"login": {"username": user, "password": PASSWORDS[user]}}]


def session_via_envoy(env, host: str, user: str) -> dict:
    """A session cookie for user on host: the login redirect, the IdP's form, the callback,
    all through Envoy (Python plays the browser)."""
    status, headers, _ = gw(env, host, "/", headers={"Accept": "text/html"})
    assert status == 302, status
    state = {k: v for k, v in set_cookies(headers).items() if v}
    cb = urllib.parse.urlsplit(idp_login(headers["Location"], user, PASSWORDS[user]))
    status, headers, _ = gw(env, host, f"{cb.path}?{cb.query}", cookies=state,
                            headers={"Accept": "text/html"})
    assert status == 302, status
    return {k: v for k, v in set_cookies(headers).items() if v and "_csrf_" not in k}


def saved_text(result: dict, index: int = 0) -> str:
    """The page text of the index-th save_text step."""
    return [s for s in result["steps"] if s["step"] == "save_text"][index]["text"]


def request_id_of(text: str) -> str:
    m = re.search(rf"Request ID\s+({REQUEST_ID})\b", text)
    assert m, text[:1000]
    return m.group(1)


def log_line(log: str, event: str, request_id: str) -> str:
    lines = [ln for ln in log.splitlines()
             if f"event={event} " in ln and f"request_id={request_id}" in ln]
    assert len(lines) == 1, (event, request_id, log[-3000:])
    return lines[0]


def assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, (path, len(data))


def screenshot_steps(shots: Path, name: str) -> list:
    """The page at 1280 px, then at 320 px wide (a phone), then back."""
    return [{"screenshot": str(shots / f"{name}.png")},
            {"viewport": {"width": 320, "height": 640}},
            {"screenshot": str(shots / f"{name}-320.png")},
            {"viewport": {"width": 1280, "height": 720}}]


# ------------------------------------------------------------------------------------------

def test_forbidden_page_and_sign_out_to_another_account(env):
    """bob signs in, is not in admins: the 403 page says so in plain words, names his account,
    the host and a request id that is in authd's log line for the decision; its sign-out link
    clears the session and ends the IdP's, and alice signs in instead."""
    log0, n = env["authd"].log_size(), len(env["echo"].requests)
    page = url(env, "pages.localhost", "/reports?q=1")
    result = Browser().run(
        login_steps(page, "bob") + [{"expect_status": 403}, {"save_text": True}]
        + screenshot_steps(env["shots"], "forbidden")
        + [{"click": "text=Sign out and use another account"},
           {"expect_url": f"{env['idp'].issuer}/session/end"},
           {"click": "button[name=logout]"},
           {"login": {"username": "alice", "password": PASSWORDS["alice"]}},
           {"expect_status": 200}, {"text": "alice@example.com"}])
    text = saved_text(result)
    for want in ("Access denied", "not allowed to use this site", "Signed in as",
                 "bob@example.com", f"pages.localhost:{env['envoy'].port}",
                 "Sign out and use another account"):
        assert want in text, (want, text)
    rid = request_id_of(text)
    line = log_line(env["authd"].log_since(log0), "check", rid)
    assert "decision=forbidden" in line and "status=403" in line and "user=bob@example.com" in line
    for name in ("forbidden.png", "forbidden-320.png"):
        assert_png(env["shots"] / name)
    # the upstream never saw bob; alice got through after the switch
    seen = env["echo"].requests[n:]
    assert not [r for r in seen if r["headers"].get("x-auth-request-email") == "bob@example.com"]
    assert [r for r in seen if r["headers"].get("x-auth-request-email") == "alice@example.com"]
    assert result["url"] == url(env, "pages.localhost", "/")
    # the sign-out that led there: logged with its own request id, to the IdP's end_session
    assert re.search(r"event=sign_out host=pages\.localhost\S* .*user=bob@example\.com "
                     rf"result=end_session request_id={REQUEST_ID}", env["authd"].log_since(log0))


def test_forbidden_json_twin_for_api_clients(env):
    bob = session_via_envoy(env, "pages.localhost", "bob")
    log0 = env["authd"].log_size()
    status, h, body = gw(env, "pages.localhost", "/api/items", cookies=bob,
                         headers={"Accept": "application/json"})
    assert status == 403 and h["Content-Type"] == "application/json", (status, body[:300])
    doc = json.loads(body)
    assert set(doc) == {"error", "status", "message", "host", "email", "request_id"}
    assert doc["error"] == "forbidden" and doc["status"] == 403
    assert doc["email"] == "bob@example.com"
    assert doc["host"] == f"pages.localhost:{env['envoy'].port}"
    assert re.fullmatch(REQUEST_ID, doc["request_id"])
    assert "decision=forbidden" in log_line(env["authd"].log_since(log0), "check", doc["request_id"])
    # XHR gets JSON as well; a browser's Accept gets the page, each with a new id
    _, _, xhr = gw(env, "pages.localhost", "/x", cookies=bob,
                   headers={"Accept": "*/*", "X-Requested-With": "XMLHttpRequest"})
    _, h, html = gw(env, "pages.localhost", "/x", cookies=bob,
                    headers={"Accept": "text/html,application/json"})
    assert json.loads(xhr)["request_id"] != doc["request_id"]
    assert h["Content-Type"].startswith("text/html") and b"bob@example.com" in html


def test_login_error_page(env):
    """A callback with no login in progress (a bookmarked or replayed callback URL) shows a
    page that says so, with the host and a request id in authd's login log line, and a way to
    start again. An IdP error shows its code only: its description, which anyone can put in a
    crafted callback link, goes to the log."""
    log0 = env["authd"].log_size()
    result = Browser().run(
        [{"goto": url(env, "pages.localhost", "/oauth2/callback?code=abc&state=stale")},
         {"expect_status": 400}, {"save_text": True}]
        + screenshot_steps(env["shots"], "login-error")
        + [{"click": "text=Try again"}, {"login": {"username": "alice", "password": PASSWORDS["alice"]}},
           {"expect_status": 200}, {"text": "alice@example.com"},
           {"goto": url(env, "pages.localhost", "/oauth2/callback?error=access_denied&error_description="
                        + urllib.parse.quote("Call +1 555 0100 to unlock your account"))},
           {"expect_status": 403}, {"save_text": True}])
    text = saved_text(result)
    for want in ("Sign-in failed", "no matching login in progress", "Start the sign-in again",
                 f"pages.localhost:{env['envoy'].port}", "Try again", "Sign out / use another account"):
        assert want in text, (want, text)
    rid = request_id_of(text)
    line = log_line(env["authd"].log_since(log0), "login", rid)
    assert "result=failure" in line
    assert_png(env["shots"] / "login-error.png")
    idp_error = saved_text(result, 1)
    # the description's words, not "555" alone: the page shows host:port, and a port can hold it
    assert 'refused the sign-in ("access_denied")' in idp_error, idp_error
    assert "555 0100" not in idp_error and "unlock your account" not in idp_error, idp_error
    line = log_line(env["authd"].log_since(log0), "login", request_id_of(idp_error))
    assert 'reason=access_denied detail="Call +1 555 0100 to unlock your account"' in line, line


def test_markup_in_a_claim_is_shown_as_text(env):
    """mallory's email claim is an <img onerror=...> tag: the 403 page shows it as text, and
    the browser runs none of it."""
    result = Browser().run(login_steps(url(env, "pages.localhost", "/"), "mallory")
                           + [{"expect_status": 403}, {"save_text": True}])
    step = [s for s in result["steps"] if s["step"] == "save_text"][0]
    assert MALLORY["email"] in step["text"], step["text"]
    assert step["title"] == "Access denied"
    status, _, body = gw(env, "pages.localhost", "/",
                         cookies=session_via_envoy(env, "pages.localhost", "mallory"),
                         headers={"Accept": "text/html"})
    assert status == 403 and b"&lt;img src&#61;x onerror&#61;&quot;document.title&#61;&#39;pwned&#39;&quot;&gt;" \
        b"@example.com" in body, body


def test_signed_out_page_without_end_session(env):
    """plain.localhost's IdP has no end_session_endpoint: signing out without rd shows the
    signed-out page (through Envoy with 401, since a 200 would reach the app), the cookies
    are gone, and "Sign in again" starts a login (silent: the IdP's session is still on)."""
    log0 = env["authd"].log_size()
    result = Browser().run(
        login_steps(url(env, "plain.localhost", "/"), "carol") + [
            {"expect_status": 200}, {"goto": url(env, "plain.localhost", "/oauth2/sign_out")},
            {"expect_status": 401}, {"save_text": True}]
        + screenshot_steps(env["shots"], "signed-out")
        + [{"click": "text=Sign in again"}, {"expect_status": 200}, {"text": "carol@example.com"}])
    text = saved_text(result)
    for want in ("Signed out", "You are signed out of this site", "carol@example.com",
                 f"plain.localhost:{env['envoy'].port}", "Sign in again"):
        assert want in text, (want, text)
    rid = request_id_of(text)
    line = log_line(env["authd"].log_since(log0), "sign_out", rid)
    assert "result=page" in line and "user=carol@example.com" in line
    # "Sign in again" found no session (a login started), and the IdP let carol back in
    rest = env["authd"].log_since(log0).split(line, 1)[1]
    assert re.search(r"event=check host=plain\.localhost\S* .*decision=login .*reason=no-session", rest), rest
    assert re.search(r"event=login host=plain\.localhost\S* .*result=ok user=carol@example\.com", rest), rest
    assert_png(env["shots"] / "signed-out.png")


def test_operator_templates_replace_the_page(env):
    """A templates dir (a ConfigMap volume: ..data symlink swap) with forbidden.html: the
    403 page is the operator's, values escaped; a later bad template is refused like a bad
    config (logged with file:line, counted) and the previous pages keep serving."""
    authd = env["authd"]
    ok, fail = ('portcullis_authd_config_reloads_total{result="success"}',
                'portcullis_authd_config_reloads_total{result="failure"}')
    ok0, fail0 = authd.metric(ok), authd.metric(fail)
    tdir = authd.dir / "templates"
    custom = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ACME</title></head>"
              "<body><h1>ACME says no</h1><p>{{email}} may not use {{ host }}.</p>"
              "<p>Ticket reference: <b id=\"rid\">{{request_id}}</b></p>"
              "{{#sign_out_url}}<a href=\"{{sign_out_url}}\">Switch account</a>{{/sign_out_url}}"
              "</body></html>\n")
    publish_volume(tdir, {"forbidden.html": custom})
    bob = {}
    try:
        authd.write_config(authd_config({**authd.c, "templates": tdir}))
        authd.wait_metric(ok, ok0 + 1)
        log0 = authd.log_size()
        shot = env["shots"] / "operator-forbidden.png"
        result = Browser().run(login_steps(url(env, "pages.localhost", "/"), "bob")
                               + [{"expect_status": 403}, {"save_text": True},
                                  {"screenshot": str(shot)}])
        text = saved_text(result)
        assert "ACME says no" in text and "bob@example.com may not use pages.localhost" in text, text
        m = re.search(rf"Ticket reference: ({REQUEST_ID})", text)
        assert m, text
        assert "decision=forbidden" in log_line(authd.log_since(log0), "check", m.group(1))
        assert_png(shot)
        bob = {c["name"]: c["value"] for c in result["cookies"]
               if c["domain"].lstrip(".") == "pages.localhost"}

        # a bad template: refused like a bad config, the operator's page keeps serving
        log0 = authd.log_size()
        publish_volume(tdir, {"forbidden.html": custom,
                              "error.html": "<h1>{{title}}</h1>\n<p>{{ detail }}</p>\n"})
        authd.wait_metric(fail, fail0 + 1)
        assert authd.metric(ok) == ok0 + 1
        assert re.search(r"event=config_reload result=failure .*templatesDir: \S*templates/"
                         r"error\.html:2:4: unknown placeholder", authd.log_since(log0)), \
            authd.log_since(log0)
        status, _, body = gw(env, "pages.localhost", "/still", cookies=bob,
                             headers={"Accept": "text/html"})
        assert status == 403 and b"ACME says no" in body, body[:300]
        # fixed: loaded again (the template files are watched like the config)
        publish_volume(tdir, {"forbidden.html": custom.replace("ACME says no", "ACME still says no"),
                              "error.html": "<h1>{{title}}</h1><p>{{message}}</p>"})
        authd.wait_metric(ok, ok0 + 2)
        status, _, body = gw(env, "pages.localhost", "/again", cookies=bob,
                             headers={"Accept": "text/html"})
        assert status == 403 and b"ACME still says no" in body, body[:300]
    finally:
        ok1 = authd.metric(ok)
        authd.write_config(authd_config(authd.c))
        authd.wait_metric(ok, ok1 + 1)
    status, _, body = gw(env, "pages.localhost", "/built-in", cookies=bob,
                         headers={"Accept": "text/html"})
    assert status == 403 and b"Access denied" in body and b"ACME" not in body
