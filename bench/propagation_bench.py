#!/usr/bin/env python3
"""Policy changes at 10,000 ProtectedHosts (issue 8 "Benchmark", DESIGN.md §7), against a real
kube-apiserver, portcullis-controller (it waits for authd) and two portcullis-authd replicas
in --watch-config mode on their ServiceAccount's token:

    bench/propagation_bench.py BUILD_DIR MINT_SESSION [--count 10000] [--changes 50] [--out DIR]

1. COUNT ProtectedHosts (one host, two groups, everything else default) created at once →
   seconds until every one is Ready, which means enforced at every authd replica.
2. CHANGES single changes of one host's allowedGroups, alternating between a group the
   benchmark's user has and one it has not → seconds from the PATCH until both replicas answer
   the user's check accordingly (200 / 403): p50 / p99.
3. Peak RSS (VmHWM) of the controller and of each replica; config bytes per host.
4. authd check req/s with COUNT hosts loaded (a replica) against one host loaded (authd from a
   file with that host), same run: wrk on one core, the server on the other, medians.
Numbers are printed; the exit status is 1 only when something could not be measured.
"""
from __future__ import annotations

import argparse
import base64
import http.client as httpclient
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.harness.authd import Authd, WatchingAuthd, config_head  # noqa: E402
from e2e.harness.kube import ApiServer  # noqa: E402
from e2e.harness.proc import Proc, free_port, http  # noqa: E402

NS, APPS = "portcullis-system", "bench"
ISSUER = "https://idp.bench.invalid"
CLIENT_SECRET = "bench-client-secret"
COOKIE_SECRET = "0123456789abcdef0123456789abcdef-propagation-bench\n"
PH = f"/apis/portcullis.io/v1alpha1/namespaces/{APPS}/protectedhosts"


def log(msg: str) -> None:
    print(f"[bench/propagation] {msg}", file=sys.stderr, flush=True)


def ph(i: int, groups: list[str]) -> dict:
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": f"ph-{i}", "namespace": APPS},
            "spec": {"hosts": [f"app-{i}.apps.example.com"],
                     "oidc": {"issuerURL": ISSUER, "clientID": "bench",
                              "clientSecretRef": {"name": "oidc", "key": "client-secret"}},
                     "access": {"allowedGroups": groups}}}


def hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Api:
    def __init__(self, api: ApiServer):
        self.api = api
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=api.ssl_context()))

    def call(self, method: str, path: str, body=None, ctype="application/json"):
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = http(method, self.api.url + path, data=data, opener=self.opener,
                              headers={"Authorization": f"Bearer {self.api.token}",
                                       "Content-Type": ctype}, timeout=60)
        return status, json.loads(raw or b"{}")


class ReadyWatch:
    """Counts the ProtectedHosts whose Ready is True for their generation, from one watch of
    them (a list every second would make the apiserver encode all 10,000 each time: the
    benchmark would load what it measures). Restarts from the last resourceVersion when the
    server ends the stream."""

    def __init__(self, api: ApiServer):
        self.api, self.ready, self.rv = api, {}, "0"
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def count(self) -> int:
        with self.lock:
            return sum(self.ready.values())

    def stop(self) -> None:
        self.stopped.set()

    def _note(self, ev: dict) -> None:
        o = ev.get("object", {})
        md = o.get("metadata", {})
        self.rv = md.get("resourceVersion", self.rv)
        if ev.get("type") == "BOOKMARK":
            return
        gen = md.get("generation", 0)
        ok = any(c["type"] == "Ready" and c["status"] == "True" and
                 c.get("observedGeneration", 0) >= gen
                 for c in o.get("status", {}).get("conditions", []))
        with self.lock:
            if ev.get("type") == "DELETED":
                self.ready.pop(md.get("name"), None)
            else:
                self.ready[md.get("name")] = ok

    def _run(self) -> None:
        while not self.stopped.is_set():
            conn = httpclient.HTTPSConnection("127.0.0.1", self.api.port, timeout=120,
                                               context=self.api.ssl_context())
            q = urllib.parse.urlencode({"watch": "1", "allowWatchBookmarks": "true",
                                        "resourceVersion": self.rv, "timeoutSeconds": "60"})
            try:
                conn.request("GET", f"{PH}?{q}",
                             headers={"Authorization": f"Bearer {self.api.token}"})
                r = conn.getresponse()
                if r.status != 200:
                    self.rv = "0"  # e.g. 410 Gone: start over from a fresh list
                    r.read()
                    time.sleep(1)
                    continue
                while not self.stopped.is_set() and (line := r.readline()):
                    ev = json.loads(line)
                    if ev.get("type") == "ERROR":
                        self.rv = "0"
                        break
                    self._note(ev)
            except (OSError, ValueError):
                time.sleep(1)
            finally:
                conn.close()


def shard_bytes(k: Api) -> tuple[int, int]:
    status, lst = k.call("GET", f"/api/v1/namespaces/{NS}/secrets"
                                "?labelSelector=portcullis.io%2Fauthd-config%3Dshard")
    texts = [base64.b64decode(s["data"]["hosts.yaml"]) for s in lst.get("items", [])]
    return sum(len(t) for t in texts), len(texts)


def wrk(port: int, host: str, cookie: str, secs: int, cpu_server: int, pid: int) -> float:
    os.sched_setaffinity(pid, {cpu_server})
    out = subprocess.run(["taskset", "-c", str(1 - cpu_server), "wrk", "-t1", "-c64",
                          f"-d{secs}s", "-H", f"Host: {host}", "-H", f"Cookie: {cookie}",
                          f"http://127.0.0.1:{port}/ext-authz/"],
                         capture_output=True, text=True, timeout=secs + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or non2xx:
        raise RuntimeError(f"wrk: no rate or non-2xx answers:\n{out}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("mint")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=8)
    a = ap.parse_args()
    os.environ["PORTCULLIS_AUTHD"] = str(Path(a.build) / "authd" / "portcullis-authd")
    controller = Path(a.build) / "controller" / "portcullis-controller"
    res: dict = {"count": a.count}
    with ApiServer() as api:
        k = Api(api)
        api.install_portcullis(NS, "istio-system", APPS)
        api.kubectl("-n", APPS, "create", "secret", "generic", "oidc",
                    f"--from-literal=client-secret={CLIENT_SECRET}")
        kubeconfig = api.service_account_kubeconfig(NS, "portcullis-authd")
        # At info, as deployed (the harness's replicas log every check at debug otherwise).
        replicas = [WatchingAuthd(f"bench-{x}", kubeconfig, ISSUER, cookie_secret=COOKIE_SECRET,
                                  args=["--log-level", "info"]) for x in "ab"]
        metrics = free_port()
        ctl = Proc("controller", [controller, "run", "--kubeconfig", api.controller_kubeconfig,
                                  "--mesh-config=none", "--leader-elect=false", "--resync-period=0",
                                  f"--metrics-addr=127.0.0.1:{metrics}"],
                   log_path=api.workdir / "controller-bench.log")
        # The one-host authd: the same host entry, from a file.
        one = Authd("bench-one", lambda c: config_head(c) + "hosts:\n" +
                    f"- id: {APPS}/ph-0\n  hosts: [app-0.apps.example.com]\n"
                    f"  oidc: {{issuerURL: '{ISSUER}', clientID: bench, clientSecret: x}}\n"
                    "  access: {allowedGroups: [g-yes]}\n", cookie_secret=COOKIE_SECRET)
        try:
            for r in replicas:
                r.start()
            ctl.start()
            ctl.wait_http(f"http://127.0.0.1:{metrics}/readyz", 60, ok=lambda s: s == 200)
            one.start()
            cookie = subprocess.run([a.mint, str(one.config), "app-0.apps.example.com", "u",
                                     "u@example.com", "g-yes"], capture_output=True, text=True,
                                    check=True, timeout=30).stdout.strip()

            log(f"creating {a.count} ProtectedHosts")
            watch = ReadyWatch(api)
            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                codes = list(pool.map(lambda i: k.call(
                    "POST", PH, ph(i, ["g-yes", "g-other"] if i == 0 else
                                   [f"team-{i % 50}-devs", f"team-{i % 50}-admins"]))[0],
                    range(a.count)))
            res["create_seconds"] = time.monotonic() - t0
            if codes.count(201) != a.count:
                raise RuntimeError(f"only {codes.count(201)} of {a.count} creates accepted")
            deadline = time.monotonic() + 900
            while (n := watch.count()) < a.count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {n} of {a.count} Ready after 900 s")
                time.sleep(0.2)
            res["all_enforced_seconds"] = time.monotonic() - t0
            watch.stop()
            total, shards = shard_bytes(k)
            res["config_bytes_per_host"] = total / a.count
            res["shards"] = shards
            log(f"all {a.count} Ready (enforced everywhere) after {res['all_enforced_seconds']:.1f} s")

            lat = []
            for i in range(a.changes):
                allow = i % 2 == 1
                groups = ["g-yes"] if allow else ["g-no"]
                want = 200 if allow else 403
                t = time.monotonic()
                status, _ = k.call("PATCH", f"{PH}/ph-0", {"spec": {"access": {"allowedGroups":
                                                                             groups}}},
                                   ctype="application/merge-patch+json")
                if status != 200:
                    raise RuntimeError(f"patch answered {status}")
                pending = list(replicas)
                while pending:
                    pending = [r for r in pending if r.check(
                        "app-0.apps.example.com", {"_portcullis": cookie.split("=", 1)[1]})[0]
                               != want]
                    if time.monotonic() - t > 30:
                        raise RuntimeError("a change was not enforced within 30 s")
                    if pending:
                        time.sleep(0.005)
                lat.append(time.monotonic() - t)
            lat.sort()
            res["change_p50"] = statistics.median(lat)
            res["change_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

            res["controller_rss_mb"] = hwm_kb(ctl.pid) / 1024
            res["authd_rss_mb"] = max(hwm_kb(r.proc.pid) for r in replicas) / 1024

            # The same host enforced in both; many = a replica with COUNT hosts. Everything
            # else is paused meanwhile (apiserver, etcd, controller, the other replica): on two
            # cores their background work would land on whichever authd is being measured.
            many, single = [], []
            host = "app-0.apps.example.com"
            paused = [ctl.pid, replicas[1].proc.pid, api.apiserver.pid, api.etcd.pid]
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            try:
                for i in range(a.rounds):
                    pair = [(many, replicas[0]), (single, one)]
                    for out, d in pair if i % 2 == 0 else pair[::-1]:
                        out.append(wrk(d.port, host, cookie, a.duration, 1, d.proc.pid))
            finally:
                for pid in paused:
                    os.kill(pid, signal.SIGCONT)
            res["rps_many"] = statistics.median(many)
            res["rps_one"] = statistics.median(single)
            log(f"check req/s rounds: {a.count} hosts {many}, 1 host {single}")
        finally:
            one.stop()
            ctl.stop()
            for r in replicas:
                r.stop()
    print(f"""
portcullis propagation benchmark ({res['count']} ProtectedHosts, 2 authd replicas)
  create all (16 threads)                 {res['create_seconds']:8.1f} s
  all Ready = enforced at every replica   {res['all_enforced_seconds']:8.1f} s   (target < 60 s)
  one change → enforced at both, p50      {res['change_p50']:8.3f} s
  one change → enforced at both, p99      {res['change_p99']:8.3f} s   (target < 2 s)
  controller peak RSS                     {res['controller_rss_mb']:8.1f} MB  (target < 64 MB)
  authd peak RSS (larger replica)         {res['authd_rss_mb']:8.1f} MB  (target < 32 MB)
  config bytes per host                   {res['config_bytes_per_host']:8.0f}     ({res['shards']} shards)
  authd check req/s, {res['count']} hosts loaded   {res['rps_many']:8.0f}
  authd check req/s, 1 host loaded        {res['rps_one']:8.0f}
  ratio                                   {res['rps_many'] / res['rps_one']:8.2f}×   (target ≥ 0.95×)
""")
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, Ctrl-C from a wrapper) unwinds through the finally blocks, so every
    # process this started is stopped by its pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - a benchmark that did not measure fails loudly
        log(f"FAILED: {e}")
        sys.exit(1)
