"""One hanging IdP delays only its own logins (issue 7, item 4): real Envoy configured by istiod from
the README's mesh provider, portcullis-authd, and two real OpenID Providers (npm oidc-provider).

  slow.localhost  IdP "slow": stopped with SIGSTOP (accepts connections, never answers)
  fine.localhost  IdP "fine": healthy

Outcomes only, no timed assertions: while the slow issuer's token endpoint holds every call
authd lets through, the fine host's callback still completes through Envoy (whose 2 s check
timeout would turn a late answer into its own 503), authd never holds more connections to the
slow IdP than its per-issuer limit, a full queue answers before any held call has given up,
and a replayed state never reaches a token endpoint again.

The binary is not built here: env PORTCULLIS_AUTHD, default build/authd/portcullis-authd.
Run:  python3 -m pytest e2e/tests/test_authd_idp_isolation.py     (~30 s)
"""
from __future__ import annotations

import http.client as httpclient
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
from e2e.harness.authd import Authd, config_head, idp_login, mesh_provider, set_cookies  # noqa: E402
from e2e.harness.peers import Echo, OidcProvider  # noqa: E402
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.proc import free_port, http, skip_e2e, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

CLIENT, SECRET = "isol", "isol-client-secret"
HOSTS = ["slow.localhost", "fine.localhost"]
# authd.h: AUTHD_IDP_RUNNING_PER_ISSUER, AUTHD_IDP_QUEUED_PER_ISSUER
RUNNING_PER_ISSUER, QUEUED_PER_ISSUER = 2, 16
FLOOD = 40


def authd_config(c: dict) -> str:
    return config_head(c) + f"""\
hosts:
  - id: test/slow
    hosts: [slow.localhost]
    oidc: {{issuerURL: "{c['slow']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
  - id: test/fine
    hosts: [fine.localhost]
    oidc: {{issuerURL: "{c['fine']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
"""


@pytest.fixture(scope="module")
def env():
    envoy_port, slow_port, fine_port = free_port(), free_port(), free_port()

    def idp(host, port):
        return OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                              "redirectUris": [f"http://{host}:{envoy_port}/oauth2/callback"]}],
                            port=port)

    slow, fine = idp("slow.localhost", slow_port), idp("fine.localhost", fine_port)
    authd = Authd("authd-idp-isolation", authd_config, slow=slow.issuer, fine=fine.issuer,
                  cookie_secret="idp-isolation-cookie-secret-0123456789ab\n")
    echo = Echo()
    envoy = Envoy(mesh_provider(authd.port), echo, hosts=HOSTS, port=envoy_port)
    started = []
    try:
        for peer in (slow, fine, echo, envoy):
            started.append(peer)
            peer.start()
        started.append(authd)
        authd.start(ready="/readyz", timeout=30)
        yield {"slow": slow, "fine": fine, "authd": authd, "envoy": envoy}
    finally:
        for peer in reversed(started):
            peer.stop()  # a stopped (SIGSTOP) IdP is continued and stopped


def gw(env, host, path, cookies=None, timeout=15):
    """Through Envoy, as a browser would."""
    h = {"Host": f"{host}:{env['envoy'].port}", "Accept": "text/html"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return http("GET", f"http://127.0.0.1:{env['envoy'].port}{path}", headers=h, timeout=timeout)


def direct(env, host, path, cookies, timeout=30):
    """Straight to authd's /oauth2/callback, as nginx routes it; (status, body) or
    ("no answer", b"") when the client gave up."""
    conn = httpclient.HTTPConnection("127.0.0.1", env["authd"].port, timeout=timeout)
    h = {"Host": f"{host}:{env['envoy'].port}", "X-Forwarded-Proto": "http",
         "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    try:
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return "no answer", b""
    finally:
        conn.close()


def start_login(env, host, path="/page"):
    """A browser without a session: (IdP URL, state cookies, state parameter)."""
    status, headers, _ = gw(env, host, path)
    assert status == 302, status
    loc = headers["Location"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)["state"][0]
    return loc, {k: v for k, v in set_cookies(headers).items() if v}, state


def callback_of(back: str) -> str:
    cb = urllib.parse.urlsplit(back)
    return f"{cb.path}?{cb.query}"


def token_calls(authd, issuer: str) -> float:
    """Token endpoint calls authd counted for issuer, whatever their result (a refused or
    expired call never reached the IdP and is left out)."""
    total = 0.0
    pat = re.compile(r'^portcullis_authd_idp_requests_total\{issuer="%s",kind="token",'
                     r'result="([a-z_]+)"\} (\S+)$' % re.escape(issuer), re.M)
    for result, value in pat.findall(authd.metrics()):
        if result not in ("rejected", "expired"):
            total += float(value)
    return total


def connections_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port (IPv4), as the kernel lists them."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and remote == f"0100007F:{port:04X}":
                n += 1
    return n


# ------------------------------------------------------------------------------------------

def test_replayed_state_never_reaches_the_token_endpoint(env):
    authd, fine = env["authd"], env["fine"]
    loc, jar, _ = start_login(env, "fine.localhost", "/replay")
    cb = callback_of(idp_login(loc, "alice", "alice-password"))
    calls0 = token_calls(authd, fine.issuer)
    replays0 = authd.metric("portcullis_authd_login_state_replays_total")
    status, headers, body = gw(env, "fine.localhost", cb, cookies=jar)
    assert status == 302, (status, body[:300])
    assert headers["Location"] == f"http://fine.localhost:{env['envoy'].port}/replay"
    assert set_cookies(headers).get("_portcullis")
    # the same callback again (the state cookie kept, as a replaying client would)
    for _ in range(5):
        status, _, body = gw(env, "fine.localhost", cb, cookies=jar)
        assert status == 400 and b"login was already used" in body, (status, body[:300])
    # a state with a made-up code: one exchange (refused by the IdP), then no more
    _, jar2, state2 = start_login(env, "fine.localhost", "/bogus")
    bogus = f"/oauth2/callback?code=made-up&state={urllib.parse.quote(state2)}"
    status, _, body = gw(env, "fine.localhost", bogus, cookies=jar2)
    assert status == 400 and b"refused" in body, (status, body[:300])
    for _ in range(5):
        status, _, body = gw(env, "fine.localhost", bogus, cookies=jar2)
        assert status == 400 and b"login was already used" in body, (status, body[:300])
    assert token_calls(authd, fine.issuer) == calls0 + 2
    assert authd.metric("portcullis_authd_login_state_replays_total") == replays0 + 10


def test_hanging_issuer_delays_only_its_own_logins(env):
    authd, slow, fine = env["authd"], env["slow"], env["fine"]
    # a fine.localhost login got as far as the IdP's redirect back
    loc, fine_jar, _ = start_login(env, "fine.localhost", "/while-slow-hangs")
    fine_cb = callback_of(idp_login(loc, "bob", "bob-password"))
    # FLOOD + 1 slow.localhost states, each with a made-up code (anyone can start logins)
    bogus = []
    for i in range(FLOOD + 1):
        _, jar, state = start_login(env, "slow.localhost", f"/flood/{i}")
        bogus.append((f"/oauth2/callback?code=made-up-{i}&state={urllib.parse.quote(state)}", jar))
    via_envoy = bogus.pop()
    rejected0 = authd.metric('portcullis_authd_idp_requests_total{issuer="%s",kind="token",'
                             'result="rejected"}' % slow.issuer)

    os.kill(slow.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
    answers, lock = [], threading.Lock()
    peak = [0]

    def flood_one(path, jar):
        r = direct(env, "slow.localhost", path, jar)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=flood_one, args=b, daemon=True) for b in bogus]
    try:
        for t in threads:
            t.start()

        def busy_answers():
            with lock:
                return [a for a in answers if a[0] == 503 and b"busy" in a[1]]

        def flood_settled():
            peak[0] = max(peak[0], connections_to(slow.port))
            return len(busy_answers()) >= FLOOD - RUNNING_PER_ISSUER - QUEUED_PER_ISSUER
        # what authd cannot take is refused at once: every refusal is back before any call
        # it did take has given up on the stopped IdP
        wait_for("the full queue refused the rest", flood_settled, timeout=20, interval=0.02)
        busy = busy_answers()
        with lock:
            assert len(answers) == len(busy), answers
        assert authd.metric('portcullis_authd_idp_requests_total{issuer="%s",kind="token",'
                            'result="rejected"}' % slow.issuer) == rejected0 + len(busy)
        # through Envoy the refusal is authd's page (401, never Envoy's bare 503)
        status, _, body = gw(env, "slow.localhost", via_envoy[0], cookies=via_envoy[1])
        assert status == 401 and b"busy" in body, (status, body[:300])

        # meanwhile the other issuer's login completes through Envoy
        status, headers, body = gw(env, "fine.localhost", fine_cb, cookies=fine_jar)
        assert status == 302, (status, body[:300])
        assert headers["Location"] == f"http://fine.localhost:{env['envoy'].port}/while-slow-hangs"
        session = {k: v for k, v in set_cookies(headers).items() if v}
        status, _, body = gw(env, "fine.localhost", "/while-slow-hangs", cookies=session)
        assert status == 200 and b"bob@example.com" in body, (status, body[:300])
        # ... while the calls authd took are still held by the stopped IdP, never more at once
        # than the per-issuer limit
        with lock:
            assert not [a for a in answers if a[0] != 503], answers
        peak[0] = max(peak[0], connections_to(slow.port))
        assert 1 <= peak[0] <= RUNNING_PER_ISSUER, peak[0]
        for t in threads:
            t.join(30)
    finally:
        os.kill(slow.proc.pid, signal.SIGCONT)
    # every held call ended with authd's own "did not answer in time", none hung
    with lock:
        held = [a for a in answers if not (a[0] == 503 and b"busy" in a[1])]
    assert len(held) <= RUNNING_PER_ISSUER + QUEUED_PER_ISSUER
    assert all(a[0] == 504 and b"did not answer in time" in a[1] for a in held), held
    assert authd.metric('portcullis_authd_idp_jobs{state="queued"}') == 0
