#!/usr/bin/env python3
"""portcullis-controller against a real kube-apiserver (issue 3 "Benchmark", DESIGN.md §7).

    bench/controller_bench.py BUILD_DIR [--count 1000] [--updates 100] [--out DIR]

1. etcd + kube-apiserver (e2e/harness/kube.py), the Istio CRDs and crds/protectedhost.yaml.
2. `portcullis-controller run --mesh-config=none --leader-elect=false ...` (admin kubeconfig).
3. COUNT ProtectedHosts created at once (POSTs from 16 threads) → seconds until every
   AuthorizationPolicy exists (a watch on AuthorizationPolicies timestamps each ADDED event),
   and until authd's config Secret lists every host.
4. UPDATES single spec changes, one after another (paths.skip gets a new unique path) →
   seconds from sending the PATCH to the watch event showing it in the policy; p50/p99.
5. Peak RSS of the controller (VmHWM).
Numbers are printed, nothing is asserted. Every loop is bounded in time.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.harness.kube import ApiServer  # noqa: E402
from e2e.harness.proc import Proc, free_port  # noqa: E402

NS = "bench"
GATEWAY_NS = "istio-system"
AUTHD_NS = "portcullis-system"
AP_PATH = f"/apis/security.istio.io/v1/namespaces/{GATEWAY_NS}/authorizationpolicies"
PH_PATH = f"/apis/portcullis.io/v1alpha1/namespaces/{NS}/protectedhosts"
OWNER_ANNOT = "portcullis.io/owner"


def log(msg: str) -> None:
    print(f"[bench/controller] {msg}", file=sys.stderr, flush=True)


class Api:
    """Minimal JSON client over the harness's ApiServer (admin token), one kept-alive TLS
    connection per thread."""

    def __init__(self, api: ApiServer):
        self.api = api
        self.ctx = api.ssl_context()
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPSConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection("127.0.0.1", self.api.port, context=self.ctx, timeout=30)
            self.local.conn = c
        return c

    def call(self, method: str, path: str, body=None, ctype="application/json"):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.api.token}", "Content-Type": ctype,
                   "Accept": "application/json"}
        for attempt in range(2):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                return r.status, json.loads(r.read() or b"{}")
            except (OSError, http.client.HTTPException):
                c.close()
                self.local.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


class PolicyWatch(threading.Thread):
    """Watches AuthorizationPolicies in the gateway namespace; keeps, per owner, the time of
    the first event and the last seen object. Waiters are woken on every event."""

    def __init__(self, api: ApiServer):
        super().__init__(daemon=True, name="policy-watch")
        self.api = api
        self.cond = threading.Condition()
        self.first: dict[str, float] = {}
        self.latest: dict[str, tuple[float, str]] = {}   # owner -> (time, json text)
        self.stopping = False
        self.rv = "0"
        self.errors = 0

    def run(self):
        ctx = self.api.ssl_context()
        while not self.stopping:
            url = (f"{self.api.url}{AP_PATH}?watch=1&allowWatchBookmarks=true"
                   f"&timeoutSeconds=120&resourceVersion={self.rv}")
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api.token}"})
            try:
                with urllib.request.urlopen(req, timeout=150, context=ctx) as r:
                    for line in r:
                        if self.stopping:
                            return
                        self._event(json.loads(line))
            except Exception as e:  # noqa: BLE001  reconnect on anything, bounded by stop()
                self.errors += 1
                if self.errors > 50:
                    log(f"policy watch: giving up after {self.errors} errors ({e})")
                    return
                time.sleep(0.2)

    def _event(self, ev: dict):
        now = time.monotonic()
        obj = ev.get("object", {})
        md = obj.get("metadata", {})
        if md.get("resourceVersion"):
            self.rv = md["resourceVersion"]
        if ev.get("type") == "ERROR":
            self.rv = "0"      # 410 Gone: start again from "any" (only timestamps of new events matter)
            return
        if ev.get("type") not in ("ADDED", "MODIFIED"):
            return
        owner = (md.get("annotations") or {}).get(OWNER_ANNOT)
        if not owner:
            return
        with self.cond:
            self.first.setdefault(owner, now)
            self.latest[owner] = (now, json.dumps(obj.get("spec", {})))
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True


def protected_host(i: int) -> dict:
    name = f"ph-{i:04d}"
    return {
        "apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "hosts": [f"app-{i:04d}.bench.example.com"],
            "oidc": {"issuerURL": "https://idp.example.com/realms/main", "clientID": f"app-{i:04d}",
                     "clientSecretRef": {"name": "bench-oidc", "key": "client-secret"}},
            "access": {"allowedGroups": ["admins"]},
            "paths": {"skip": ["/healthz"]},
        },
    }


def vmhwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def controller_argv(binary: str, api: ApiServer, metrics_port: int) -> list[str]:
    """`run` as the brief has it, or PORTCULLIS_CONTROLLER_ARGS (whitespace-separated,
    {kubeconfig} and {metrics} substituted)."""
    override = os.environ.get("PORTCULLIS_CONTROLLER_ARGS")
    args = override.split() if override else [
        "--kubeconfig={kubeconfig}", "--mesh-config=none", "--leader-elect=false",
        "--wait-for-authd=false", "--metrics-addr=127.0.0.1:{metrics}"]
    return [binary, "run", *[a.format(kubeconfig=api.kubeconfig, metrics=metrics_port) for a in args]]


def wait_ready(ctl: Proc, port: int, timeout: float) -> float | None:
    """Seconds until the controller's /readyz answers 200 (caches synced), None if not."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and ctl.alive():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    log(f"controller not ready on :{port}/readyz after {timeout:.0f}s; measuring anyway")
    return None


def setup_cluster(api: ApiServer, k: Api):
    log("installing the Istio CRDs and the ProtectedHost CRD")
    api.install_istio_crds()
    crd = str(ROOT / "crds" / "protectedhost.yaml")
    api.kubectl("apply", "--server-side", "-f", crd)
    api.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crd)
    for ns in (NS, GATEWAY_NS, AUTHD_NS):
        k.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": ns}})
    k.call("POST", f"/api/v1/namespaces/{NS}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-oidc", "namespace": NS},
        "data": {"client-secret": base64.b64encode(b"bench-client-secret").decode()}})


def authd_config_hosts(k: Api) -> int:
    """Hosts listed across authd's config shards."""
    status, lst = k.call("GET", f"/api/v1/namespaces/{AUTHD_NS}/secrets"
                                "?labelSelector=portcullis.io%2Fauthd-config%3Dshard")
    if status != 200:
        return 0
    return sum(base64.b64decode((s.get("data") or {}).get("hosts.yaml", "")).decode(
        errors="replace").count("bench/ph-") for s in lst.get("items", []))


def count_ready(k: Api) -> int:
    status, lst = k.call("GET", PH_PATH)
    if status != 200:
        return 0
    n = 0
    for ph in lst.get("items", []):
        st = ph.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in st.get("conditions") or [])
        if ready and st.get("observedGeneration") == ph["metadata"].get("generation"):
            n += 1
    return n


def poll_count(read, target: int, t0: float, deadline: float, interval: float):
    """Calls read() every interval until it returns target or more, or deadline passes:
    (seconds since t0, or None when it never got there; the last count)."""
    n = 0
    while time.monotonic() < deadline:
        n = read()
        if n >= target:
            return time.monotonic() - t0, n
        time.sleep(interval)
    return None, n


def phase_create(k: Api, watch: PolicyWatch, count: int, timeout: float) -> dict:
    owners = {f"{NS}/ph-{i:04d}" for i in range(count)}
    bodies = [protected_host(i) for i in range(count)]
    log(f"creating {count} ProtectedHosts from 16 threads")
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda b: k.call("POST", PH_PATH, b)[0], bodies))
    t_created = time.monotonic() - t0
    failed = sum(1 for s in results if s != 201)
    ok = watch.wait_for(lambda: owners <= watch.first.keys(), timeout)
    t_all = (max(watch.first[o] for o in owners) - t0) if ok else None
    t_after = (t_all - t_created) if t_all is not None else None
    have = len(owners & watch.first.keys())
    first = min((watch.first[o] for o in owners if o in watch.first), default=None)
    deadline = time.monotonic() + timeout
    # authd's config Secret lists every host.
    t_secret, n_secret = poll_count(lambda: authd_config_hosts(k), count, t0, deadline, 0.5)
    # Every ProtectedHost reconciled: Ready=True for the current generation.
    t_ready, n_ready = poll_count(lambda: count_ready(k), count, t0, deadline, 1.0)
    return {"count": count, "create_failed": failed, "create_seconds": t_created,
            "all_ready_seconds": t_ready, "ready": n_ready,
            "first_policy_seconds": None if first is None else first - t0,
            "all_policies_seconds": t_all, "after_last_create_seconds": t_after,
            "policies_seen": have,
            "authd_config_seconds": t_secret, "authd_config_hosts": n_secret}


def phase_update(k: Api, watch: PolicyWatch, count: int, updates: int, timeout: float) -> dict:
    lat, missed = [], 0
    nonce = os.urandom(3).hex()
    for j in range(updates):
        i = (j * 7919) % count       # spread over the resources
        owner = f"{NS}/ph-{i:04d}"
        marker = f"/bench-{nonce}-{j}"
        t0 = time.monotonic()
        status, _ = k.call("PATCH", f"{PH_PATH}/ph-{i:04d}", {"spec": {"paths": {"skip": [marker]}}},
                           ctype="application/merge-patch+json")
        if status != 200:
            missed += 1
            continue
        ok = watch.wait_for(lambda: marker in watch.latest.get(owner, (0, ""))[1], timeout)
        if ok:
            lat.append(watch.latest[owner][0] - t0)
        else:
            missed += 1
    in_order = [round(x, 4) for x in lat]
    lat = sorted(lat)

    def pct(p):
        if not lat:
            return None
        return lat[max(0, math.ceil(p / 100 * len(lat)) - 1)]  # nearest rank
    return {"updates": updates, "measured": len(lat), "missed": missed,
            "p50_seconds": pct(50), "p99_seconds": pct(99), "max_seconds": lat[-1] if lat else None,
            "mean_seconds": statistics.mean(lat) if lat else None, "latencies": in_order}


def fmt(v, spec=".2f", unit=" s"):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def report(res: dict, out: Path):
    c, u = res["create"], res.get("update", {})
    rss = res.get("rss_kb")
    rows = [
        ("ProtectedHosts created (16 parallel POSTs)", fmt(c["create_seconds"]),
         f"{c['count'] - c['create_failed']}/{c['count']} accepted"),
        ("→ first AuthorizationPolicy", fmt(c["first_policy_seconds"]), ""),
        (f"→ all {c['count']} AuthorizationPolicies exist", fmt(c["all_policies_seconds"]),
         f"{c['policies_seen']}/{c['count']} seen"),
        ("   of which after the last create returned", fmt(c["after_last_create_seconds"]), ""),
        ("→ authd config Secret lists every host", fmt(c["authd_config_seconds"]),
         f"{c['authd_config_hosts']}/{c['count']} hosts"),
        ("→ every ProtectedHost Ready (observedGeneration current)", fmt(c.get("all_ready_seconds")),
         f"{c.get('ready', 0)}/{c['count']} Ready"),
        ("one spec change → policy updated, p50", fmt(u.get("p50_seconds"), ".3f"),
         f"{u.get('measured', 0)}/{u.get('updates', 0)} measured"),
        ("one spec change → policy updated, p99", fmt(u.get("p99_seconds"), ".3f"),
         f"max {fmt(u.get('max_seconds'), '.3f')}"),
        ("controller peak RSS (VmHWM)", "n/a" if rss is None else f"{rss / 1024:.1f} MB",
         "after the creates: " + ("n/a" if res.get("rss_after_create_kb") is None
                                  else f"{res['rss_after_create_kb'] / 1024:.1f} MB")),
    ]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measurement'.ljust(w)}  {'result':>10}  note", "-" * (w + 30)]
    lines += [f"{r[0].ljust(w)}  {r[1]:>10}  {r[2]}" for r in rows]
    print("\n".join(lines))
    md = ["| measurement | result | note |", "|---|---|---|"]
    md += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    (out / "table.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(res, indent=1))


def problems(res: dict) -> list[str]:
    """Every measurement of the table that was not taken: a row printed as n/a is a failed run,
    not a result."""
    c, u = res.get("create") or {}, res.get("update")
    out = []
    if res.get("controller_ready_seconds") is None:
        out.append("the controller's /readyz never answered 200")
    if not c:
        return out + ["the create phase did not run"]
    if c["create_failed"]:
        out.append(f"{c['create_failed']} of {c['count']} ProtectedHost creates were refused")
    for key, what in (("first_policy_seconds", "no AuthorizationPolicy appeared"),
                      ("all_policies_seconds", f"{c['policies_seen']}/{c['count']} AuthorizationPolicies appeared"),
                      ("authd_config_seconds", f"authd's config Secret listed {c['authd_config_hosts']}/{c['count']} hosts"),
                      ("all_ready_seconds", f"{c['ready']}/{c['count']} ProtectedHosts became Ready")):
        if c.get(key) is None:
            out.append(what)
    if u is None:
        out.append("the spec changes were not measured (the create phase did not complete)")
    elif u["missed"] or u["p99_seconds"] is None:
        out.append(f"{u['missed']} of {u['updates']} spec changes never reached the policy")
    if res.get("rss_kb") is None or not res.get("controller_alive"):
        out.append("the controller exited during the run")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build", nargs="?", default=str(ROOT / "build"))
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--timeout", type=float, default=300, help="seconds per phase")
    p.add_argument("--out")
    a = p.parse_args()
    # SIGTERM/SIGINT unwind through the finally blocks, which stop every child by its pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = Path(a.build).resolve() / "controller" / "portcullis-controller"
    if not os.access(binary, os.X_OK):
        sys.exit(f"bench/controller: {binary} is not built")
    out = Path(a.out or Path(a.build) / "bench" / time.strftime("controller-%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "controller", "common"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    res: dict = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "source": (git + (" + uncommitted changes in controller/ or common/" if dirty else "")
                            if git else os.environ.get("BENCH_SOURCE", f"{ROOT} (not a git checkout)")),
                 "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    with ApiServer() as api:
        k = Api(api)
        setup_cluster(api, k)
        watch = PolicyWatch(api)
        watch.start()
        mport = free_port()
        argv = controller_argv(str(binary), api, mport)
        log("starting " + " ".join(argv))
        ctl = Proc("controller", argv, log_path=out / "controller.log")
        try:
            ctl.start()
            res["controller_ready_seconds"] = wait_ready(ctl, mport, 30)
            if not ctl.alive():
                sys.exit(f"bench/controller: controller exited {ctl.returncode}; see {out}/controller.log")
            res["controller_argv"] = argv[1:]
            res["create"] = phase_create(k, watch, a.count, a.timeout)
            res["rss_after_create_kb"] = vmhwm_kb(ctl.pid)
            log(f"create: {res['create']}")
            if res["create"]["all_policies_seconds"] is not None:
                # The updates start once the controller has settled (all Ready, or the phase
                # timed out), so they measure a steady-state controller.
                res["update"] = phase_update(k, watch, a.count, a.updates, min(a.timeout, 30))
                log("update: " + str({k: v for k, v in res["update"].items() if k != "latencies"}))
            res["rss_kb"] = vmhwm_kb(ctl.pid)
            res["controller_alive"] = ctl.alive()
        finally:
            watch.stopping = True
            ctl.stop()  # by its pid: SIGTERM, 10 s, SIGKILL
    res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    print(f"\ncontroller benchmark, {res['date_utc']}, results in {out}")
    print(f"  loadavg before {' '.join(res['loadavg_before'])}, after {' '.join(res['loadavg_after'])}")
    print(f"  source: {res['source']}")
    print(f"  controller: {' '.join(res['controller_argv'])}")
    print(f"  controller ready (/readyz) after {fmt(res.get('controller_ready_seconds'))}\n")
    report(res, out)
    bad = problems(res)
    if bad:
        print("\nbench/controller: FAILED, not every measurement was taken:")
        print("\n".join(f"  {p}" for p in bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
