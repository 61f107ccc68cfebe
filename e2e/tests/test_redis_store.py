"""session.store: redis against real peers (issue 10): Debian's redis-server (started here,
with a password; once with TLS), two portcullis-authd replicas sharing it and the cookie
secret, and the npm oidc-provider as the IdP. Python speaks to authd's Envoy door exactly as
Envoy's ext_authz does (test_redis_peers.py does the same through real Envoy, Keycloak and
Chromium).

  one.localhost      session.store: redis, bearer tokens too  (grace 4s, revalidate 1s)
  refresh.localhost  session.store: redis, refresh: 3s

Run:  python3 -m pytest e2e/tests/test_redis_store.py      (~1 min)
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.harness.authd import Authd, config_head, idp_login, set_cookies  # noqa: E402
from e2e.harness.peers import DEFAULT_USERS, OidcProvider  # noqa: E402
from e2e.harness.proc import (AUTHD, CONTROLLER, Proc, built, free_port, skip_e2e,  # noqa: E402
                               wait_for, work_dir)
from e2e.harness.redis import Redis  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

CLIENT, SECRET = "rs", "rs-client-secret"
COOKIE_SECRET = "redis-store-test-cookie-secret-0123456789\n"
HOSTS = ("one.localhost", "refresh.localhost")
GRACE, REVALIDATE = 4, 1
REFRESH = 3  # refresh.localhost's session.refresh, in seconds


def next_second(after: float = 0.05) -> None:
    """Sleeps to just past the next wall-clock second. authd keeps session times in whole
    seconds, so a session refreshed at s.9 is due REFRESH - 0.9 s later; a refresh started
    just past a second boundary leaves a test its full REFRESH seconds."""
    time.sleep(1 - time.time() % 1 + after)


def config(c: dict) -> str:
    oidc = f'{{issuerURL: "{c["issuer"]}", clientID: {CLIENT}, clientSecret: {SECRET}}}'
    return config_head(c) + c["redis"] + f"""\
hosts:
  - id: test/one
    hosts: [one.localhost]
    oidc: {oidc}
    session: {{store: redis}}
    bearerTokens: {{enabled: true}}
  - id: test/refresh
    hosts: [refresh.localhost]
    oidc: {oidc}
    session: {{store: redis, refresh: 3s}}
"""


class Replica(Authd):
    """One authd replica; request() speaks like Envoy's ext_authz (or a browser at /oauth2)."""

    def __init__(self, name: str, issuer: str, redis: Redis, section: str | None = None,
                 revocations: Path | None = None):
        super().__init__(name, config, cookie_secret=COOKIE_SECRET, issuer=issuer,
                         args=["--revocations", revocations] if revocations else (),
                         redis=section or redis.config(grace=f"{GRACE}s",
                                                       revalidate=f"{REVALIDATE}s",
                                                       commandTimeout="500ms"))

    def request(self, path, host="one.localhost", cookies=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Host": f"{host}:{self.port}", "X-Forwarded-Proto": "http", "Accept": "text/html",
             **(headers or {})}
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        t0 = time.monotonic()
        try:
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        return {"status": r.status, "headers": r.getheaders(), "body": body,
                "seconds": time.monotonic() - t0}

    def check(self, cookies, host="one.localhost", path="/ext-authz/app"):
        return self.request(path, host=host, cookies=cookies)

    def readyz(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        try:
            conn.request("GET", "/readyz")
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()


def hdr(resp, name):
    vals = [v for k, v in resp["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def callback(a: Replica, user: str, host: str = "one.localhost") -> tuple[dict, dict]:
    """The code flow through a's Envoy door up to the callback: its reply, and the browser's
    cookies before it."""
    r = a.request("/ext-authz/app/page", host=host)
    assert r["status"] == 302, r
    jar = {k: v for k, v in set_cookies(r["headers"]).items() if v}
    back = urllib.parse.urlsplit(idp_login(hdr(r, "Location"), user, f"{user}-password"))
    return a.request(f"/ext-authz{back.path}?{back.query}", host=host, cookies=jar), jar


def login(a: Replica, user: str, host: str = "one.localhost") -> dict:
    """The code flow through a's Envoy door; the browser's cookies after it."""
    r, jar = callback(a, user, host)
    assert r["status"] == 302, (r["status"], r["body"][:300])
    for k, v in set_cookies(r["headers"]).items():
        if v is None:
            jar.pop(k, None)
        else:
            jar[k] = v
    return {k: v for k, v in jar.items() if not k.startswith("_portcullis_csrf_")}


@pytest.fixture(scope="module")
def env():
    redis = Redis("redis-store")
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    revocations = work_dir("redis-store") / "revocations.yaml"
    a = Replica("authd-redis-a", issuer, redis, revocations=revocations)
    b = Replica("authd-redis-b", issuer, redis, revocations=revocations)
    uris = [f"http://{h}:{x.port}/oauth2/callback" for h in HOSTS for x in (a, b)]
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET, "redirectUris": uris}],
                       DEFAULT_USERS, port=idp_port)
    started = []
    try:
        for peer in (redis, idp, a, b):
            started.append(peer)
            peer.start(**({"ready": "/readyz", "timeout": 20} if isinstance(peer, Replica) else {}))
        yield {"redis": redis, "idp": idp, "a": a, "b": b, "revocations": revocations}
    finally:
        for peer in reversed(started):
            peer.stop()


@contextlib.contextmanager
def own_idp(name: str, redis: Redis, section: str):
    """A replica started with an IdP of its own (its callback registered there), for tests
    that log in at a replica the module's IdP does not know; both stopped after."""
    idp_port = free_port()
    a = Replica(name, f"http://127.0.0.1:{idp_port}", redis, section)
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                         "redirectUris": [f"http://{h}:{a.port}/oauth2/callback" for h in HOSTS]}],
                       DEFAULT_USERS, port=idp_port)
    with idp:
        a.start(ready="/readyz", timeout=20)
        try:
            yield a, idp
        finally:
            a.stop()


def test_login_ticket_is_small_and_every_replica_and_restart_accepts_it(env):
    a, b = env["a"], env["b"]
    jar = login(a, "alice")
    assert set(jar) == {"_portcullis"}, jar
    assert jar["_portcullis"].startswith("t1.")
    assert len("_portcullis=" + jar["_portcullis"]) < 200
    for replica in (a, b):
        r = replica.check(jar)
        assert r["status"] == 200, r
        assert hdr(r, "X-Auth-Request-Email") == "alice@example.com"
        assert "admins" in hdr(r, "X-Auth-Request-Groups")
        assert "_portcullis" not in (hdr(r, "Cookie") or "")
    # an authd restart loses no session: nothing lives only in the replica
    a.stop()
    a.start(ready="/readyz", timeout=20)
    assert a.check(jar)["status"] == 200
    # a forged ticket of the right shape is no session anywhere
    forged = {"_portcullis": "t1." + "A" * 64}
    assert a.check(forged)["status"] == 302 and b.check(forged)["status"] == 302


def test_redis_holds_no_readable_claim(env):
    a, redis = env["a"], env["redis"]
    jar = login(a, "bob")
    keys = redis.keys("portcullis:*")
    assert keys and all(k.startswith("portcullis:s:") for k in keys), keys
    ticket = jar["_portcullis"][3:]
    for k in keys:
        assert ticket[:22] not in k and ticket[22:] not in k  # names give away no ticket half
        value = redis.get(k)
        assert value, k
        for plain in (b"bob@example.com", b"bob", b"staff", b"refresh", b"127.0.0.1",
                      b'"sub"', b"eyJ"):
            assert plain not in value, (k, plain)
        ttl = int(redis.cli("PTTL", k).strip())
        assert 0 < ttl <= 12 * 3600 * 1000  # the session's lifetime


def test_sign_out_refuses_the_copied_cookie_at_both_replicas(env):
    a, b, redis = env["a"], env["b"], env["redis"]
    jar = login(a, "carol")
    copy = dict(jar)
    assert a.check(copy)["status"] == 200 and b.check(copy)["status"] == 200  # both hold it
    before = set(redis.keys("portcullis:s:*"))
    r = a.request("/oauth2/sign_out", cookies=jar)
    assert r["status"] in (200, 302), r
    assert set_cookies(r["headers"]).get("_portcullis", "x") is None  # the browser's is cleared
    assert len(before - set(redis.keys("portcullis:s:*"))) == 1  # the server's is gone
    assert a.check(copy)["status"] == 302  # at once where it was signed out
    time.sleep(REVALIDATE + 0.3)  # b asks Redis again after revalidate
    assert b.check(copy)["status"] == 302
    assert b.metric('portcullis_authd_redis_sessions_total{source="missing"}') >= 1


def fake_ticket() -> str:
    return "t1." + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")


def test_sign_out_finds_the_ticket_past_the_cookie_jars_bounds(env):
    """A Cookie header padded past what authd reads as a jar (128 cookies, 16 KiB: a sibling
    subdomain can set that many on the victim's browser) still signs the session out: the
    copied cookie is refused at both replicas. More session cookies than a sign-out deletes
    (32) is not a sign-out (503), rather than one that leaves a session behind."""
    a, b = env["a"], env["b"]
    paddings = {"200 cookies": {f"pad{i}": "x" for i in range(200)},
                "20 KiB": {f"big{i}": "y" * 1000 for i in range(20)},
                "31 other tickets first": {"_portcullis": None}}
    for what, pad in paddings.items():
        jar = login(a, "carol")
        copy = dict(jar)
        assert a.check(copy)["status"] == 200 and b.check(copy)["status"] == 200
        if what.startswith("31"):
            header = "; ".join([f"_portcullis={fake_ticket()}" for _ in range(31)] +
                               [f"_portcullis={jar['_portcullis']}"])
        else:
            header = "; ".join([f"{k}={v}" for k, v in pad.items()] +
                               [f"{k}={v}" for k, v in jar.items()])
        r = a.request("/oauth2/sign_out", headers={"Cookie": header})
        assert r["status"] in (200, 302), (what, r["status"], r["body"][:300])
        assert a.check(copy)["status"] == 302, what
        time.sleep(REVALIDATE + 0.3)
        assert b.check(copy)["status"] == 302, what
    jar = login(a, "carol")
    header = "; ".join([f"_portcullis={fake_ticket()}" for _ in range(40)] +
                       [f"_portcullis={jar['_portcullis']}"])
    r = a.request("/oauth2/sign_out", headers={"Cookie": header})
    assert r["status"] == 503 and b"Sign-out not completed" in r["body"], r["status"]
    assert "more session cookies than a sign-out deletes" in a.log()


def test_sign_out_is_confirmed_only_by_the_delete_and_503_while_redis_is_paused(env):
    """The sign-out's reply waits for DEL's answer. Redis paused (SIGSTOP) after the DEL was
    sent: no answer within commandTimeout, so the browser is told the sign-out did not complete
    (503, its cookie cleared all the same), not that it is signed out. Redis resumed: the
    retried sign-out is confirmed (DEL's 0 counts: the DEL sent before the pause was applied
    when Redis resumed) and the copied cookie is refused at both replicas."""
    a, b, redis = env["a"], env["b"], env["redis"]
    jar = login(a, "alice")
    copy = dict(jar)
    assert a.check(copy)["status"] == 200 and b.check(copy)["status"] == 200
    confirmed = a.metric('portcullis_authd_redis_writes_total{op="sign_out",result="ok"}')
    offset = a.log_size()
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        r = a.request("/oauth2/sign_out", cookies=jar)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    assert r["status"] == 503 and b"Sign-out not completed" in r["body"], (r["status"], r["body"])
    assert set_cookies(r["headers"]).get("_portcullis", "x") is None
    lines = [x for x in a.log_since(offset).splitlines() if "event=sign_out" in x]
    assert lines and all("could not be deleted in Redis" in x for x in lines), lines
    assert a.metric('portcullis_authd_redis_writes_total{op="sign_out",result="ok"}') == confirmed
    for label, replica in (("a", a), ("b", b)):
        wait_for(f"replica {label} to reconnect", lambda r=replica: r.readyz()[1].get("redis") ==
                 "up", timeout=15)
    r = a.request("/oauth2/sign_out", cookies=jar)
    assert r["status"] in (200, 302), (r["status"], r["body"][:300])
    assert a.metric('portcullis_authd_redis_writes_total{op="sign_out",result="ok"}') == \
        confirmed + 1
    assert a.check(copy)["status"] == 302
    time.sleep(REVALIDATE + 0.3)  # b asks Redis again after revalidate
    assert b.check(copy)["status"] == 302


def ticket() -> str:
    """A well-formed ticket cookie value that names no session."""
    return "t1." + base64.urlsafe_b64encode(os.urandom(48)).decode()


def test_a_ticket_unknown_to_redis_ends_the_lookup(env):
    """Several ticket cookies of the host's name: they are read in order, and one that Redis
    does not know (signed out, expired, or planted for a parent domain) ends the lookup. A later
    one is not tried: falling through would sign the user in as a planted ticket's owner as
    soon as the user's own session ended. The user's own ticket first is found; behind an
    unknown one it is not, at the replica that reads Redis and at the one that holds it."""
    a, b = env["a"], env["b"]
    jar = login(a, "bob")
    mine = f"_portcullis={jar['_portcullis']}"
    for label, replica in (("reads Redis", b), ("holds it", a)):
        r = replica.request("/ext-authz/app", headers={"Cookie": f"{mine}; _portcullis={ticket()}"})
        assert r["status"] == 200, (label, r["status"])
        assert hdr(r, "X-Auth-Request-Email") == "bob@example.com", label
        r = replica.request("/ext-authz/app", headers={"Cookie": f"_portcullis={ticket()}; {mine}"})
        assert r["status"] == 302, (label, r["status"])
    # The user's own session ended: a valid ticket of someone else's behind it is not used.
    alice = f"_portcullis={login(a, 'alice')['_portcullis']}"
    assert a.request("/oauth2/sign_out", cookies=jar)["status"] in (200, 302)
    time.sleep(REVALIDATE + 0.3)  # b asks Redis again after revalidate
    for label, replica in (("signed out here", a), ("held it", b)):
        r = replica.request("/ext-authz/app", headers={"Cookie": f"{mine}; {alice}"})
        assert r["status"] == 302, (label, r["status"], hdr(r, "X-Auth-Request-Email"))


def test_a_held_ticket_due_for_redis_is_asked_about_not_passed_over(env):
    """bob's ticket first, held but due for revalidation; alice's behind it, held and fresh:
    Redis is asked about bob's, and the check is bob's, never alice's."""
    a = env["a"]
    bob = f"_portcullis={login(a, 'bob')['_portcullis']}"
    alice = f"_portcullis={login(a, 'alice')['_portcullis']}"
    time.sleep(REVALIDATE + 0.3)  # both due
    assert hdr(a.request("/ext-authz/app", headers={"Cookie": alice}),
               "X-Auth-Request-Email") == "alice@example.com"  # alice's fresh again
    r = a.request("/ext-authz/app", headers={"Cookie": f"{bob}; {alice}"})
    assert r["status"] == 200 and hdr(r, "X-Auth-Request-Email") == "bob@example.com", \
        (r["status"], hdr(r, "X-Auth-Request-Email"))


def two_clients(c: dict) -> str:
    """one.localhost as the module's client, other.localhost as a second client of the same
    IdP: the same cookie name and secret, another session binding."""
    oidc = f'issuerURL: "{c["issuer"]}", clientSecret: {SECRET}'
    return config_head(c) + c["redis"] + f"""\
hosts:
  - id: test/one
    hosts: [one.localhost]
    oidc: {{{oidc}, clientID: {CLIENT}}}
    session: {{store: redis}}
  - id: test/other
    hosts: [other.localhost]
    oidc: {{{oidc}, clientID: {CLIENT}2}}
    session: {{store: redis}}
"""


class TwoClients(Replica):
    def __init__(self, name: str, issuer: str, redis: Redis):
        Authd.__init__(self, name, two_clients, cookie_secret=COOKIE_SECRET, issuer=issuer,
                       redis=redis.config(grace=f"{GRACE}s", revalidate="5m",
                                          commandTimeout="500ms"))


def test_another_clients_ticket_first_is_decided_alike_held_or_read(env):
    """bob's ticket from another client's host (same cookie name; sent by hand or planted)
    before his own: the replica that holds both answers as the one that reads them from
    Redis — the other client's session ends the lookup there, so it does here too, instead
    of being passed over to the ticket behind it."""
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    a = TwoClients("authd-redis-two-a", issuer, env["redis"])
    b = TwoClients("authd-redis-two-b", issuer, env["redis"])
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET, "redirectUris": [
                            f"http://one.localhost:{x.port}/oauth2/callback" for x in (a, b)]},
                        {"clientId": f"{CLIENT}2", "secret": SECRET, "redirectUris": [
                            f"http://other.localhost:{x.port}/oauth2/callback" for x in (a, b)]}],
                       DEFAULT_USERS, port=idp_port)
    with idp:
        a.start(ready="/readyz", timeout=20)
        b.start(ready="/readyz", timeout=20)
        try:
            own = f"_portcullis={login(a, 'bob')['_portcullis']}"
            other = f"_portcullis={login(a, 'bob', 'other.localhost')['_portcullis']}"
            assert a.request("/ext-authz/app", headers={"Cookie": own})["status"] == 200
            for label, replica in (("reads Redis", b), ("holds both", a)):
                r = replica.request("/ext-authz/app", headers={"Cookie": f"{other}; {own}"})
                assert r["status"] == 302, (label, r["status"], hdr(r, "X-Auth-Request-Email"))
        finally:
            b.stop()
            a.stop()


def test_a_read_answered_before_the_sign_outs_delete_does_not_bring_the_session_back(env):
    """A check's GET of carol's session is sent, then her sign-out's DEL, while Redis is paused;
    resumed, Redis answers the GET (the session) before the DEL. The sign-out is confirmed and
    the copied cookie is refused at this replica at once: the GET's answer is not held again."""
    a, redis = env["a"], env["redis"]
    jar = login(a, "carol")
    copy = dict(jar)
    time.sleep(REVALIDATE + 0.3)  # the next check asks Redis
    got = {}
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        check = threading.Thread(target=lambda: got.update(check=a.check(copy)))
        check.start()
        time.sleep(0.1)
        out = threading.Thread(target=lambda: got.update(
            out=a.request("/oauth2/sign_out", cookies=jar)))
        out.start()
        time.sleep(0.1)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    check.join(10)
    out.join(10)
    assert got["check"]["status"] == 200, got["check"]["status"]  # before the sign-out
    assert got["out"]["status"] in (200, 302), (got["out"]["status"], got["out"]["body"][:300])
    assert a.check(copy)["status"] == 302


def test_a_refused_read_is_neither_the_session_nor_its_absence(env):
    """An error reply to the session's GET that is not "cannot answer now" (NOPERM here: the
    ACL stopped allowing GET) is no confirmation: the held session does not pass for grace as
    while Redis is down. Nor is it "signed out": the session stays in Redis and passes again
    once GET is allowed."""
    a, redis = env["a"], env["redis"]
    jar = login(a, "carol")
    assert a.check(jar)["status"] == 200
    series = 'portcullis_authd_redis_sessions_total{source="refused"}'
    refused, keys = a.metric(series), len(redis.keys("portcullis:s:*"))
    redis.cli("ACL", "SETUSER", "default", "-get")
    try:
        time.sleep(REVALIDATE + 0.3)  # past revalidate, well within grace
        r = a.check(jar)
        assert r["status"] == 302, r["status"]
        assert a.metric(series) == refused + 1
        assert "session read refused" in a.log() and "NOPERM" in a.log()
    finally:
        redis.cli("ACL", "SETUSER", "default", "+get")
    assert len(redis.keys("portcullis:s:*")) == keys
    assert a.check(jar)["status"] == 200


def test_a_refused_read_of_the_first_ticket_is_not_passed_over_to_the_next(env):
    """bob's session key turned into a list (whoever can write Redis): its GET gets WRONGTYPE.
    alice's valid ticket behind bob's does not stand in for it at a replica reading Redis."""
    b, redis = env["b"], env["redis"]
    before = set(redis.keys("portcullis:s:*"))
    bob = f"_portcullis={login(env['a'], 'bob')['_portcullis']}"
    (key,) = set(redis.keys("portcullis:s:*")) - before
    alice = f"_portcullis={login(env['a'], 'alice')['_portcullis']}"
    redis.cli("DEL", key)
    redis.cli("RPUSH", key, "not a session")
    r = b.request("/ext-authz/app", headers={"Cookie": f"{bob}; {alice}"})
    assert r["status"] == 302, (r["status"], hdr(r, "X-Auth-Request-Email"))
    assert "WRONGTYPE" in b.log()
    assert b.request("/ext-authz/app", headers={"Cookie": alice})["status"] == 200


def test_refresh_from_two_replicas_at_once_calls_the_idp_once(env):
    a, b = env["a"], env["b"]
    jar = login(a, "alice", host="refresh.localhost")
    assert a.check(jar, host="refresh.localhost")["status"] == 200
    assert b.check(jar, host="refresh.localhost")["status"] == 200
    series = 'portcullis_authd_idp_requests_total{issuer="%s",kind="refresh",result="ok"}' % \
        env["idp"].issuer
    calls = a.metric(series) + b.metric(series)
    time.sleep(REFRESH)
    next_second()  # due at both, held by both; the refreshed session is not due for REFRESH s
    barrier = threading.Barrier(8)
    results = []

    def hit(replica):
        barrier.wait()
        results.append(replica.check(jar, host="refresh.localhost")["status"])

    threads = [threading.Thread(target=hit, args=((a, b)[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    wait_for("the refresh to be done", lambda: a.metric(
        'portcullis_authd_redis_refreshes_total{result="done"}') + b.metric(
        'portcullis_authd_redis_refreshes_total{result="done"}') >= 1, timeout=10)
    assert a.metric(series) + b.metric(series) == calls + 1
    # the browser's cookie did not change, and both replicas read the refreshed session
    time.sleep(REVALIDATE + 0.3)
    for replica in (a, b):
        r = replica.check(jar, host="refresh.localhost")
        assert r["status"] == 200 and "_portcullis" not in set_cookies(r["headers"])
    assert a.metric(series) + b.metric(series) == calls + 1


def test_redis_killed_held_sessions_pass_for_grace_new_logins_get_the_page(env):
    a, b, redis = env["a"], env["b"], env["redis"]
    jar = login(a, "alice")
    assert a.check(jar)["status"] == 200 and b.check(jar)["status"] == 200
    checks, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            checks.append((time.monotonic(), a.check(jar)))

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.3)
        killed_at = time.monotonic()
        redis.kill()  # SIGKILL mid-load
        wait_for("authd to see Redis down", lambda: a.readyz()[1].get("redis") == "down",
                 timeout=5)
        assert a.readyz() == (200, {"ready": True, "redis": "down"})
        assert a.metric("portcullis_authd_redis_up") == 0
        # held sessions keep passing within the grace
        while time.monotonic() < killed_at + GRACE - 1:
            assert b.check(jar)["status"] == 200
            time.sleep(0.2)
        # a new login gets the clear page at once (401 through Envoy's door: no 5xx there)
        r = a.request("/ext-authz/new")
        assert r["status"] == 401 and r["seconds"] < 2, r
        text = r["body"].decode()
        assert "session store (Redis) cannot be reached" in text, text[:400]
        assert "redis: down" in a.log()
        # past the grace the held session ends too (a login, which fails the same way)
        time.sleep(max(0.0, killed_at + GRACE + 0.5 - time.monotonic()))
        assert b.check(jar)["status"] == 401
    finally:
        stop.set()
        t.join()
    assert checks and all(c["seconds"] < 2 for _, c in checks), \
        max(c["seconds"] for _, c in checks)
    assert all(c["status"] == 200 for at, c in checks if at < killed_at + GRACE - 1)
    # signing out cannot delete the session now: not a sign-out, and the page says so
    r = a.request("/oauth2/sign_out", cookies=jar)
    assert r["status"] == 503 and b"Sign-out not completed" in r["body"], r["status"]
    # Redis back (empty: no persistence here) -> logins work again without an authd restart
    redis.start()
    wait_for("authd to reconnect", lambda: a.readyz()[1].get("redis") == "up", timeout=10)
    wait_for("authd b to reconnect", lambda: b.readyz()[1].get("redis") == "up", timeout=10)
    jar = login(a, "bob")
    assert a.check(jar)["status"] == 200 and b.check(jar)["status"] == 200


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def bad_jwt(idp: OidcProvider) -> str:
    """An ID token of idp's shape, signed with its key id, whose signature is 256 random bytes:
    the RSA check fails inside OpenSSL."""
    jwks = json.loads(urllib.request.urlopen(idp.discovery()["jwks_uri"], timeout=5).read())
    kid = next(k["kid"] for k in jwks["keys"] if k.get("kty") == "RSA")
    head = b64url(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64url(json.dumps({"iss": idp.issuer, "aud": CLIENT, "sub": "mallory",
                              "exp": int(time.time()) + 600, "iat": int(time.time())}).encode())
    return f"{head}.{body}.{b64url(os.urandom(256))}"


def test_rediss_with_acl_user(tmp_path):
    """rediss:// with the CA of its certificate, an ACL user and a password file."""
    redis = Redis("redis-tls", tls=True)
    with redis:
        redis.cli("ACL", "SETUSER", "portcullis", "on", ">acl-user-password", "~portcullis:*",
                  "+get", "+set", "+del", "+eval", "+ping", "+select", "+auth")
        pw = tmp_path / "acl-password"
        pw.write_text("acl-user-password\n")
        section = redis.config(username="portcullis", passwordFile=str(pw))
        with own_idp("authd-rediss", redis, section) as (a, idp):
            assert a.readyz() == (200, {"ready": True, "redis": "up"})
            jar = login(a, "alice")
            assert a.check(jar)["status"] == 200
            assert len(redis.keys("portcullis:s:*")) == 1
            # A bearer token whose RSA signature does not verify leaves an error on the
            # thread's OpenSSL queue; the TLS reads of Redis on that thread must not take it
            # for theirs (they did: "tls read failed", Redis down, every command failed).
            for _ in range(3):
                r = a.request("/ext-authz/app", headers={"Authorization": f"Bearer {bad_jwt(idp)}"})
                assert r["status"] in (302, 401), r["status"]
                time.sleep(REVALIDATE + 0.3)  # the next check reads Redis again
                assert a.check(jar)["status"] == 200
            assert a.readyz() == (200, {"ready": True, "redis": "up"})
            assert "tls read failed" not in a.log()


def test_reload_moves_authd_to_another_redis_without_a_restart(env):
    """A config reload with other redis settings: the old connection is let go off the loop
    (it was retrying an address that resolves nowhere), the new one is up, logins work."""
    redis = env["redis"]
    a = Replica("authd-redis-reload", env["idp"].issuer, redis,
                section="redis: {url: 'redis://no-such-host.invalid:6379'}\n")
    a.start(ready="/readyz", timeout=20)
    try:
        assert a.readyz() == (200, {"ready": True, "redis": "down"})
        r = a.request("/ext-authz/app")
        assert r["status"] == 401 and b"session store (Redis)" in r["body"]
        a.c["redis"] = redis.config()
        a.write_config(config(a.c))
        wait_for("the reload to reach Redis", lambda: a.readyz()[1].get("redis") == "up",
                 timeout=15)
        assert a.check({"_portcullis": "t1." + "B" * 64})["status"] == 302  # answered, not hung
        assert "config_reload result=success" in a.log()
    finally:
        a.stop()


def test_refresh_done_elsewhere_is_taken_not_repeated(env):
    """A replica that holds the session as still fresh (revalidate 5m) but due for refresh,
    after another replica refreshed it and let the lock go: it reads the session again under
    the lock and takes that result; the IdP is called once (a second call with the old
    refresh token could end the session where the IdP rotates refresh tokens)."""
    a, redis = env["a"], env["redis"]
    c = Replica("authd-redis-c", env["idp"].issuer, redis,
                section=redis.config(revalidate="5m"))
    c.start(ready="/readyz", timeout=20)
    try:
        jar = login(a, "carol", host="refresh.localhost")
        assert a.check(jar, host="refresh.localhost")["status"] == 200
        assert c.check(jar, host="refresh.localhost")["status"] == 200  # held, fresh for 5m
        series = 'portcullis_authd_idp_requests_total{issuer="%s",kind="refresh",result="ok"}' \
            % env["idp"].issuer
        calls = a.metric(series) + c.metric(series)
        done = 'portcullis_authd_redis_refreshes_total{result="done"}'
        before = a.metric(done)
        time.sleep(REFRESH)
        next_second()
        assert a.check(jar, host="refresh.localhost")["status"] == 200
        wait_for("a's refresh", lambda: a.metric(done) > before, timeout=10)
        assert c.check(jar, host="refresh.localhost")["status"] == 200
        wait_for("c to take a's refresh", lambda: c.metric(
            'portcullis_authd_redis_refreshes_total{result="done_elsewhere"}') >= 1, timeout=10)
        assert a.metric(series) + c.metric(series) == calls + 1
        for replica in (a, c):
            assert replica.check(jar, host="refresh.localhost")["status"] == 200
    finally:
        c.stop()


def test_a_failed_refresh_waits_its_retry_time_across_revalidations(env):
    """A refresh the IdP does not answer is tried again after 30 s, not at each revalidation
    (1 s here) that reads the session from Redis again: a down IdP is not called every second
    for every session due. The session keeps passing meanwhile."""
    failed = 'portcullis_authd_redis_refreshes_total{result="failed"}'
    with own_idp("authd-redis-retry", env["redis"],
                 env["redis"].config(revalidate=f"{REVALIDATE}s")) as (a, idp):
        jar = login(a, "alice", host="refresh.localhost")
        assert a.check(jar, host="refresh.localhost")["status"] == 200
        time.sleep(REFRESH + 0.2)
        idp.stop()  # connection refused: the refresh fails at once
        assert a.check(jar, host="refresh.localhost")["status"] == 200
        wait_for("the refresh to fail", lambda: a.metric(failed) >= 1, timeout=10)
        end = time.monotonic() + 4 * REVALIDATE + 0.5
        while time.monotonic() < end:  # four revalidations, each a read of the due session
            assert a.check(jar, host="refresh.localhost")["status"] == 200
            time.sleep(0.2)
        assert a.metric('portcullis_authd_redis_sessions_total{source="redis"}') >= 4
        assert a.metric(failed) == 1


def test_revoke_refuses_a_redis_session_at_both_replicas(env):
    """Revocation holds for Redis sessions as for cookies: `revoke` (file form) ends bob's
    session at both replicas within seconds, carol's goes on, and bob's next login works."""
    a, b = env["a"], env["b"]
    bob, carol = login(a, "bob"), login(b, "carol")
    assert all(r.check(j)["status"] == 200 for r in (a, b) for j in (bob, carol))
    out = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "revoke", "--user",
                          "bob@example.com", "--file", str(env["revocations"])],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    for label, r in (("a", a), ("b", b)):
        wait_for(f"bob refused at replica {label}", lambda r=r: r.check(bob)["status"] == 302, 10)
        assert r.check(carol)["status"] == 200
    again = login(a, "bob")
    assert a.check(again)["status"] == 200 and b.check(again)["status"] == 200



def replication(redis: Redis) -> dict:
    """INFO replication of redis as a dict."""
    return dict(line.strip().split(":", 1) for line in redis.cli("INFO", "replication")
                .splitlines() if ":" in line)


def test_after_a_failover_authd_leaves_the_replica_and_writes_reach_the_new_master():
    """A failover the way a Service sees one: the replica is promoted and takes the address,
    the old master becomes its replica and keeps the connections it had. authd's next write
    there is answered READONLY: that login fails, authd drops the connection, and the
    next one reaches the new master: logins work again, and the session written before the
    failover (replicated) still passes."""
    old, new = Redis("redis-failover-old"), Redis("redis-failover-new")
    connected = 'portcullis_authd_redis_connections_total{event="connected"}'
    with old, new:
        for r in (old, new):
            r.cli("CONFIG", "SET", "masterauth", r.password)
        new.cli("REPLICAOF", "127.0.0.1", old.port)
        wait_for("the replica to sync", lambda: replication(new).get("master_link_status") ==
                 "up", timeout=15)
        with own_idp("authd-redis-failover", old, old.config(commandTimeout="500ms")) as (c, _):
            alice = login(c, "alice")
            wait_for("alice's session on the replica", lambda: new.keys("portcullis:s:*"),
                     timeout=10)
            address, moved = old.port, free_port()
            old.cli("CONFIG", "SET", "port", moved)  # its open connections stay
            old.port = moved
            new.cli("CONFIG", "SET", "port", address)
            new.port = address
            new.cli("REPLICAOF", "NO", "ONE")
            old.cli("REPLICAOF", "127.0.0.1", address)
            wait_for("the old master to follow the new one",
                     lambda: replication(old).get("master_link_status") == "up", timeout=15)
            before = c.metric(connected)
            r, _ = callback(c, "bob")  # 401: Envoy's door turns 5xx into 401
            assert r["status"] == 401 and b"session store (Redis)" in r["body"], r["status"]
            assert "READONLY" in c.log()
            c.wait_metric(connected, before + 1, timeout=10)
            bob = login(c, "bob")
            assert c.check(bob)["status"] == 200 and c.check(alice)["status"] == 200
            assert len(new.keys("portcullis:s:*")) == 2


class HungNameServer:
    """A UDP socket on port 53 of a loopback address that takes DNS queries and answers none
    until answer(): a name server that does not answer, for as long as the test needs. Then
    every query, held or new, gets NXDOMAIN."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            self.ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
            try:
                self.sock.bind((self.ip, 53))
                break
            except OSError:
                continue
        else:
            raise OSError("no free loopback address for port 53")
        self.queries, self.held, self.answering = 0, [], False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _nxdomain(query: bytes) -> bytes:
        end = query.index(b"\0", 12) + 5  # the question: its name, type and class
        return query[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:end]

    def _serve(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            with self.lock:
                self.queries += 1
                if not self.answering:
                    self.held.append((query, peer))
                    continue
            self.sock.sendto(self._nxdomain(query), peer)

    def answer(self):
        with self.lock:
            self.answering, held, self.held = True, self.held, []
        for query, peer in held:
            self.sock.sendto(self._nxdomain(query), peer)

    def close(self):
        self.sock.close()


class ResolvingReplica(Replica):
    """A replica whose resolver is the name server of resolv_conf: authd runs in a mount
    namespace of its own where that file is /etc/resolv.conf."""

    def __init__(self, name, issuer, redis, section, resolv_conf: Path):
        super().__init__(name, issuer, redis, section)
        self.resolv_conf = resolv_conf

    def start(self, ready="/readyz", timeout=20):
        self.proc = Proc("authd", ["unshare", "--mount", "sh", "-c",
                                   'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                                   self.resolv_conf, AUTHD, "--config", self.config],
                         log_path=self.log_path).start()
        self.proc.wait_http(f"http://127.0.0.1:{self.admin}{ready}", timeout,
                            ok=lambda s: s == 200)
        return self


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for its own mount namespace and port 53")
def test_reload_does_not_wait_on_the_loop_for_an_old_connection_stuck_in_the_resolver(env,
                                                                                        tmp_path):
    """The old connection's thread is inside getaddrinfo (its name server holds the query)
    when a reload moves authd to another Redis: the new connection comes up and checks are
    answered while the old one is still there; once the name server answers, the old one is
    released."""
    dns = HungNameServer()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {dns.ip}\noptions timeout:30 attempts:5\n")
    slow = "redis://redis.portcullis.test:6379"
    d = ResolvingReplica("authd-redis-resolver", env["idp"].issuer, env["redis"],
                         f"redis: {{url: '{slow}'}}\n", resolv)
    try:
        d.start()
        wait_for("the redis thread to ask the name server", lambda: dns.queries > 0, timeout=10)
        d.c["redis"] = env["redis"].config()
        d.write_config(config(d.c))
        wait_for("the reload to reach Redis", lambda: d.readyz()[1].get("redis") == "up",
                 timeout=15, ignore=(OSError,))
        assert d.check({"_portcullis": ticket()})["status"] == 302
        assert dns.held and f"state=released address={slow}" not in d.log()  # still resolving
        dns.answer()
        wait_for("the old connection to be released",
                 lambda: f"state=released address={slow}" in d.log(), timeout=15)
        assert d.check({"_portcullis": ticket()})["status"] == 302
    finally:
        d.stop()
        dns.close()
