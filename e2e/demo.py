"""`make demo`: the whole portcullis flow on this machine, then a URL to try by hand.

Starts a real kube-apiserver with the CRDs, istiod, the controller, authd, a gateway Envoy
configured by istiod, Keycloak and an echo app (e2e/harness/stack.py), applies examples/echoserver.yaml with kubectl, logs in
with headless Chromium as alice (allowed) and bob (403), prints what to open, and stops
everything on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import time

from e2e.harness.peers import Browser, DEFAULT_USERS
from e2e.harness.stack import Stack


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def scripted_login(stack: Stack, user: dict) -> dict:
    return Browser().run([{"goto": stack.url},
                          {"login": {"username": user["username"], "password": user["password"]}}],
                         check=False)


def on_term(*_):
    raise KeyboardInterrupt


def main() -> int:
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, on_term)
    users = {u["username"]: u for u in DEFAULT_USERS}
    with Stack(progress=say) as stack:
        say("kubectl apply -f examples/echoserver.yaml (host and issuer set to the local ones)")
        stack.apply_echo(groups=["admins"])
        stack.wait_protected()
        say(f"protected in {time.monotonic() - t0:.0f}s; logging in with headless Chromium")
        alice = scripted_login(stack, users["alice"])
        ok = alice.get("status") == 200 and "alice@example.com" in alice.get("text", "")
        say(f"alice -> HTTP {alice.get('status')}, echo saw X-Auth-Request-Email: "
            f"{'alice@example.com' if ok else '(missing)'}")
        bob = scripted_login(stack, users["bob"])
        say(f"bob   -> HTTP {bob.get('status')} (not in admins)")
        print(f"""
  portcullis demo is up ({time.monotonic() - t0:.0f}s)

  open        {stack.url}
  users       alice / {users['alice']['password']}   (group admins: allowed)
              bob   / {users['bob']['password']}     (group staff: 403)
  Keycloak    {stack.keycloak.base_url}/admin  (admin / admin)
  istiod      {stack.istiod.http_url}/debug/syncz  (what the gateway Envoy accepted)
  Envoy       {stack.gateway.admin_url}/config_dump
  kubectl     kubectl --kubeconfig {stack.api.kubeconfig} get ph -A
  logs        {stack.dir}

  Ctrl-C stops everything.
""", flush=True)
        if not ok or bob.get("status") != 403:
            say("the scripted logins did not go as expected; see the logs above")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            say("stopping")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
