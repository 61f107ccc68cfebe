#!/usr/bin/env python3
"""Helpers for bench/authd.sh (standard library only; the gateway Envoys of the chains are
configured by a real istiod: bench/authd_mesh.py).

  authd_helper.py idp-config --port P --out FILE --redirect URL...
  authd_helper.py o2p-login --url http://127.0.0.1:PORT [--user alice --password ...]
  authd_helper.py status --url URL [--host H] [--cookie C]           (prints the HTTP status)
  authd_helper.py wrk-parse FILE                                      (one JSON line)
  authd_helper.py table --dir DIR --targets a,b,... [--markdown FILE]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The e2e harness: the bench's logins are the e2e tests' own.
from e2e.harness.authd import idp_login  # noqa: E402
from e2e.harness.peers import DEFAULT_USERS  # noqa: E402
from e2e.harness.proc import NoRedirect, http  # noqa: E402

# The users of the bench IdP: alice (admins), test-only password.
USERS = DEFAULT_USERS[:1]


def cmd_idp_config(a):
    ttl = {"AccessToken": 86400, "IdToken": 86400, "Session": 86400, "Grant": 86400}
    clients = [{"clientId": "bench", "secret": "bench-secret", "redirectUris": a.redirect}]
    cfg = {"port": a.port, "host": "127.0.0.1", "issuer": f"http://127.0.0.1:{a.port}",
           "users": USERS, "clients": clients, "ttl": ttl}
    Path(a.out).write_text(json.dumps(cfg, indent=1))


def cmd_o2p_login(a):
    """A real authorization-code login at oauth2-proxy against the bench IdP: /oauth2/start →
    IdP → login form → callback; prints oauth2-proxy's session cookie(s) as a Cookie header."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    url = f"{a.url}/oauth2/start?rd=%2F"
    try:
        url = idp_login(url, a.user, a.password, opener=opener, steps=20)
        status = http("GET", url, opener=opener, timeout=15)[0]  # the callback sets the cookie
    except (AssertionError, OSError) as e:
        sys.exit(f"o2p-login: {e}")
    cookies = [f"{c.name}={c.value}" for c in jar if c.name.startswith(a.cookie_name)]
    if not cookies:
        sys.exit(f"o2p-login: no {a.cookie_name} cookie after the login (last status {status} at {url})")
    print("; ".join(sorted(cookies)))


def cmd_status(a):
    headers = {}
    if a.host:
        headers["Host"] = a.host
    if a.cookie:
        headers["Cookie"] = a.cookie
    print(http("GET", a.url, headers=headers, timeout=15)[0])


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk_parse(text: str) -> dict:
    out = {"rps": None, "p50": None, "p99": None, "non2xx": 0, "errors": 0, "requests": None}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Requests/sec:"):
            out["rps"] = float(s.split()[1])
        elif s.startswith("50%"):
            out["p50"] = _ms(s.split()[1])
        elif s.startswith("99%"):
            out["p99"] = _ms(s.split()[1])
        elif s.startswith("Non-2xx or 3xx responses:"):
            out["non2xx"] = int(s.split(":")[1])
        elif s.startswith("Socket errors:"):
            out["errors"] = sum(int(x) for x in re.findall(r"\d+", s))
        elif re.match(r"\d+ requests in", s):
            out["requests"] = int(s.split()[0])
    return out


def cmd_wrk_parse(a):
    print(json.dumps(wrk_parse(Path(a.file).read_text())))


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(d: Path, targets: list[str]) -> dict:
    rows = {}
    for t in targets:
        runs = sorted(d.glob(f"wrk-{t}-*.txt"))
        parsed = [wrk_parse(p.read_text()) for p in runs]
        meta = {}
        mp = d / f"meta-{t}.json"
        if mp.exists():
            meta = json.loads(mp.read_text())
        rows[t] = {
            "label": meta.get("label", t),
            "not_measured": meta.get("not_measured"),
            "want": meta.get("want"),
            "runs": [p["rps"] for p in parsed],
            "rps": _median([p["rps"] for p in parsed]),
            "best": max((p["rps"] for p in parsed if p["rps"]), default=None),
            "p50": _median([p["p50"] for p in parsed]),
            "p99": _median([p["p99"] for p in parsed]),
            "bad": sum(p["non2xx"] + p["errors"] for p in parsed),
            "non2xx": sum(p["non2xx"] for p in parsed),
            "rss_kb": meta.get("rss_kb"),
            "rss_note": meta.get("rss_note", ""),
            "status": meta.get("status"),
        }
    return rows


def _fmt(v, spec, unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def _ratio(rows, a, b):
    """(ratio of the medians, median of the per-round ratios): rounds are interleaved, so the
    per-round ratio compares targets measured under the same background load."""
    if a not in rows or b not in rows or not rows[a]["rps"] or not rows[b]["rps"]:
        return None, None
    per_round = [x / y for x, y in zip(rows[a]["runs"], rows[b]["runs"]) if x and y]
    return rows[a]["rps"] / rows[b]["rps"], _median(per_round)


def problems(rows: dict, runs: int) -> list[str]:
    """Why a target asked for has no numbers to show: not started or dropped, a round without a
    request rate (wrk failed, the server died), answers other than the one measured, or a
    different status after the load."""
    out = []
    for t, r in rows.items():
        if r["not_measured"]:
            out.append(f"{t}: not measured: {r['not_measured']}")
            continue
        measured = sum(1 for x in r["runs"] if x)
        if measured < runs:
            out.append(f"{t}: {measured} of {runs} rounds gave a request rate (wrk output in wrk-{t}-*.txt)")
        if r["non2xx"]:
            out.append(f"{t}: {r['non2xx']} responses other than 2xx during the rounds")
        if r["want"] and r["status"] != r["want"]:
            out.append(f"{t}: answered {r['status']} after the rounds, expected {r['want']}")
    return out


def chain_costs(rows: dict, targets: list[str]) -> list:
    """The cost of authorization in the chain: everything runs on one core, so 1/rate is the
    core time one request takes; the difference to the no-policy chain is what the check adds
    (Envoy's ext_authz exchange and the authorizer's work)."""
    out = []
    for t, who in (("chain_authd", "authd"), ("chain_o2p", "oauth2-proxy")):
        if t in targets and "chain_none" in targets and rows[t]["rps"] and rows["chain_none"]["rps"]:
            out.append((f"cost of authorization in the chain ({who})",
                        1e6 / rows[t]["rps"] - 1e6 / rows["chain_none"]["rps"]))
    return out


def core_split(d: Path, targets: list[str]) -> list:
    """Where the server core's time went per request in each chain: CPU ticks each process
    used during the rounds (cpu-TARGET-N.txt) over the requests wrk completed."""
    tck = 100
    mt = d / "machine.txt"
    if mt.exists():
        m = re.search(r"^clk_tck: (\d+)", mt.read_text(), re.M)
        tck = int(m.group(1)) if m else tck
    out = []
    for t in targets:
        files = sorted(d.glob(f"cpu-{t}-*.txt"))
        if not files:
            continue
        ticks: dict = {}
        for f in files:
            for line in f.read_text().splitlines():
                name, _, v = line.partition(" ")
                ticks[name] = ticks.get(name, 0) + int(v or 0)
        reqs = sum(wrk_parse(p.read_text())["requests"] or 0 for p in sorted(d.glob(f"wrk-{t}-*.txt")))
        if reqs and ticks:
            out.append((t, {n: v * 1e6 / tck / reqs for n, v in ticks.items()}))
    return out


def cmd_table(a):
    d = Path(a.dir)
    targets = [t for t in a.targets.split(",") if t]
    rows = summarize(d, targets)
    head = ("target", "req/s (median)", "p50 ms", "p99 ms", "peak RSS MB", "non-2xx/err",
            "status", "runs req/s", "best round")
    lines = [head]
    for t in targets:
        r = rows[t]
        if r["not_measured"]:
            lines.append((r["label"], "not measured", "", "", "", "", "", "", ""))
            continue
        rss = None if r["rss_kb"] is None else r["rss_kb"] / 1024
        lines.append((r["label"], _fmt(r["rps"], ",.0f"), _fmt(r["p50"], ".3f"),
                      _fmt(r["p99"], ".3f"), _fmt(rss, ".1f") + (f" ({r['rss_note']})" if r["rss_note"] else ""),
                      str(r["bad"]), str(r["status"]), " / ".join(_fmt(x, ".0f") for x in r["runs"]),
                      _fmt(r["best"], ",.0f")))
    o2p = max((t for t in targets if t.startswith("o2p")), key=lambda t: rows[t]["rps"] or 0,
              default=None)
    # The ratios between the targets of this run (all of them by default).
    pairs = [("authd / oauth2-proxy (faster of its checks)", "authd", o2p),
             ("authd redis, held / cookie session (target ≥ 0.8)", "authd_redis", "authd"),
             ("authd redis, cold / cookie session (target ≥ 0.3)", "authd_redis_cold", "authd"),
             ("authd / nginx return 200", "authd", "nginx"),
             ("authd / bare lws", "authd", "lws"),
             ("chain: Envoy→authd / Envoy, no policy (target ≥ 0.5)", "chain_authd", "chain_none"),
             ("chain: Envoy→authd / Envoy→oauth2-proxy (target ≥ 2)", "chain_authd", "chain_o2p"),
             ("chain: Envoy→oauth2-proxy / Envoy, no policy", "chain_o2p", "chain_none")]
    ratios = [(name, _ratio(rows, x, y)) for name, x, y in pairs if x in targets and y in targets]
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    for i, row in enumerate(lines):
        print("  ".join(str(c).ljust(widths[j]) for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for name, (v, pr) in ratios:
        print(f"{name}: {_fmt(v, '.2f', 'x')} (median of per-round ratios {_fmt(pr, '.2f', 'x')})")
    costs = chain_costs(rows, targets)
    for name, us in costs:
        print(f"{name}: {_fmt(us, '.0f', ' µs')} of the server core per request")
    split = core_split(d, targets)
    for t, per in split:
        print(f"{t}: CPU per request " + ", ".join(f"{n} {us:.0f} µs" for n, us in per.items()))
    if a.markdown:
        md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(str(c) for c in row) + " |" for row in lines[1:]]
        md.append("")
        md += [f"- {name}: **{_fmt(v, '.2f', '×')}** (median of per-round ratios {_fmt(pr, '.2f', '×')})"
               for name, (v, pr) in ratios]
        md += [f"- {name}: {_fmt(us, '.0f', ' µs')} of the server core per request" for name, us in costs]
        md += [f"- {t}: CPU per request " + ", ".join(f"{n} {us:.0f} µs" for n, us in per.items())
               for t, per in split]
        Path(a.markdown).write_text("\n".join(md) + "\n")
    bad = problems(rows, a.runs)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "ratios": {n: {"of_medians": v, "median_per_round": pr}
                                                                   for n, (v, pr) in ratios},
                                            "problems": bad}, indent=1))
    if bad:
        print("\nFAILED, not every target was measured:")
        print("\n".join(f"  {p}" for p in bad))
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("idp-config")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--redirect", nargs="+", required=True)
    s.set_defaults(fn=cmd_idp_config)
    s = sub.add_parser("o2p-login")
    s.add_argument("--url", required=True)
    s.add_argument("--user", default="alice")
    s.add_argument("--password", default="alice-password")
    s.add_argument("--cookie-name", default="_oauth2_proxy")
    s.set_defaults(fn=cmd_o2p_login)
    s = sub.add_parser("status")
    s.add_argument("--url", required=True)
    s.add_argument("--host")
    s.add_argument("--cookie")
    s.set_defaults(fn=cmd_status)
    s = sub.add_parser("wrk-parse")
    s.add_argument("file")
    s.set_defaults(fn=cmd_wrk_parse)
    s = sub.add_parser("table")
    s.add_argument("--dir", required=True)
    s.add_argument("--targets", required=True)
    s.add_argument("--runs", type=int, default=1, help="rounds every target must have numbers for")
    s.add_argument("--markdown")
    s.add_argument("--json")
    s.set_defaults(fn=cmd_table)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
