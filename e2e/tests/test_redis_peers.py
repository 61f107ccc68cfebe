"""session.store: redis through the chain users run (issue 10): headless Chromium logs in
through a real Envoy configured by a real istiod, Keycloak as the IdP with a user in 200
groups (an ID token of ~9 KB, which cookie sessions split into chunks), two
portcullis-authd replicas sharing Debian's redis-server (with a password).

  big.localhost   Keycloak, anyone, session.store: redis   (Envoy -> replica a; b beside it)

Run:  python3 -m pytest e2e/tests/test_redis_peers.py      (~2 min, Keycloak ~50 s)
"""
from __future__ import annotations

import http.client as httpclient
import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness import peers  # noqa: E402
from e2e.harness.authd import Authd, config_head, mesh_provider, set_cookies  # noqa: E402
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.peers import DEFAULT_USERS, Browser, Echo, Keycloak  # noqa: E402
from e2e.harness.proc import free_port, http, skip_e2e  # noqa: E402
from e2e.harness.redis import Redis  # noqa: E402

pytestmark = [pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1"),
              pytest.mark.keycloak]

KC_CLIENT, KC_SECRET = "portcullis", "portcullis-client-secret"
HOST = "big.localhost"
REVALIDATE = 1
BIG_GROUPS = [f"team-{i:03d}-platform-engineers" for i in range(200)]
DAVE = {"username": "dave", "password": "dave-password", "email": "dave@example.com",
        "firstName": "Dave", "lastName": "Many", "groups": BIG_GROUPS}
COOKIE_SECRET = "redis-peers-test-cookie-secret-0123456789\n"


def config(c: dict) -> str:
    return config_head(c) + c["redis"] + f"""\
hosts:
  - id: test/big
    hosts: [{HOST}]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {KC_CLIENT}, clientSecret: {KC_SECRET}}}
    session: {{store: redis}}
"""


def door(replica: Authd, cookies: dict, path: str = "/ext-authz/again") -> tuple[int, dict]:
    """One check at replica's Envoy door, as Envoy's ext_authz sends it."""
    conn = httpclient.HTTPConnection("127.0.0.1", replica.port, timeout=10)
    h = {"Host": f"{HOST}:{replica.port}", "X-Forwarded-Proto": "http", "Accept": "text/html",
         "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    try:
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def env():
    envoy_port, kc_port = free_port(), free_port()
    redis = Redis("redis-peers")
    kc = Keycloak([{"clientId": KC_CLIENT, "secret": KC_SECRET,
                    "redirectUris": [f"http://{HOST}:{envoy_port}/oauth2/callback"]}],
                  users=DEFAULT_USERS + [DAVE], port=kc_port)
    section = redis.config(revalidate=f"{REVALIDATE}s")
    a = Authd("authd-rpeers-a", config, cookie_secret=COOKIE_SECRET, issuer=kc.issuer,
              redis=section)
    b = Authd("authd-rpeers-b", config, cookie_secret=COOKIE_SECRET, issuer=kc.issuer,
              redis=section)
    echo = Echo()
    envoy = Envoy(mesh_provider(a.port), echo, hosts=[HOST], port=envoy_port)
    started, kc_error = [], []

    def start_keycloak():
        try:
            kc.start()
        except Exception as e:  # noqa: BLE001 - re-raised below
            kc_error.append(e)

    kc_thread = threading.Thread(target=start_keycloak, daemon=True)
    try:
        started.append(kc)
        kc_thread.start()
        for peer in (redis, echo, envoy):
            started.append(peer)
            peer.start()
        kc_thread.join(300)
        if kc_error or kc_thread.is_alive():
            raise kc_error[0] if kc_error else peers.PeerError("Keycloak did not start")
        for replica in (a, b):
            started.append(replica)
            replica.start(ready="/readyz", timeout=30)
        yield {"redis": redis, "kc": kc, "a": a, "b": b, "echo": echo, "envoy": envoy}
    finally:
        kc_thread.join(300)
        for peer in reversed(started):
            peer.stop()


@pytest.fixture(scope="module")
def dave(env):
    """dave's browser login through Envoy; his cookies as Chromium holds them."""
    n = len(env["echo"].requests)
    result = Browser(timeout=120).run([
        {"goto": f"http://{HOST}:{env['envoy'].port}/big"},
        {"login": {"username": "dave", "password": DAVE["password"]}},
        {"expect_status": 200}, {"text": "dave@example.com"}])
    cookies = {c["name"]: c["value"] for c in result["cookies"]
               if c["domain"].lstrip(".") == HOST}
    return {"cookies": cookies, "echo_from": n}


def test_browser_login_through_envoy_holds_a_small_ticket_every_replica_accepts(env, dave):
    cookies = dave["cookies"]
    assert set(cookies) == {"_portcullis"}, sorted(cookies)  # one cookie, no chunks
    assert len("_portcullis=" + cookies["_portcullis"]) < 200
    seen = [r for r in env["echo"].requests[dave["echo_from"]:]
            if r["headers"].get("x-auth-request-email") == "dave@example.com"]
    assert seen, "the upstream never saw dave"
    groups = seen[-1]["headers"]["x-auth-request-groups"]
    assert BIG_GROUPS[0] in groups and BIG_GROUPS[-1] in groups
    for replica in (env["a"], env["b"]):
        status, h = door(replica, cookies)
        assert status == 200, (replica.dir, status)
        assert h["x-auth-request-email"] == "dave@example.com"
        assert h["x-auth-request-groups"].count("platform-engineers") == 200
    # and again through Envoy from Python with exactly the browser's cookie
    status, _, body = http("GET", f"http://127.0.0.1:{env['envoy'].port}/again",
                           headers={"Host": f"{HOST}:{env['envoy'].port}",
                                    "Cookie": f"_portcullis={cookies['_portcullis']}"})
    assert status == 200 and json.loads(body)["headers"]["x-auth-request-email"] == \
        "dave@example.com"


def test_redis_holds_no_readable_claim(env, dave):
    redis = env["redis"]
    keys = redis.keys("*")
    assert keys and all(k.startswith("portcullis:s:") for k in keys), keys
    ticket = dave["cookies"]["_portcullis"][3:]
    for k in keys:
        assert ticket[:22] not in k and ticket[22:] not in k
        value = redis.get(k)
        assert len(value) > 200 * 20  # the 200 groups are there, sealed
        for plain in (b"dave", b"platform-engineers", b"team-000", b"Many", b"eyJ", b"realms"):
            assert plain not in value, (k, plain)


def test_sign_out_refuses_the_copied_cookie_at_both_replicas(env, dave):
    copy = dict(dave["cookies"])
    envoy = env["envoy"]
    status, h, _ = http("GET", f"http://127.0.0.1:{envoy.port}/oauth2/sign_out?rd=/bye",
                        headers={"Host": f"{HOST}:{envoy.port}",
                                 "Cookie": f"_portcullis={copy['_portcullis']}"})
    assert status == 302 and h["Location"].startswith(env["kc"].discovery()["end_session_endpoint"])
    assert set_cookies(h).get("_portcullis", "kept") is None
    assert env["redis"].keys("*") == []  # the server-side session is gone
    # the copied cookie: through Envoy (replica a) at once, and at b once it asks Redis again
    status, h, _ = http("GET", f"http://127.0.0.1:{envoy.port}/after",
                        headers={"Host": f"{HOST}:{envoy.port}", "Accept": "text/html",
                                 "Cookie": f"_portcullis={copy['_portcullis']}"})
    assert status == 302 and h["Location"].startswith(env["kc"].issuer)
    time.sleep(REVALIDATE + 0.3)
    for replica in (env["a"], env["b"]):
        status, _ = door(replica, copy)
        assert status == 302, replica.dir
