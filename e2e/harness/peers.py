"""Real peers for portcullis e2e tests (DESIGN.md §6): Echo upstream, nginx, Keycloak,
oidc-provider and a headless Chromium, all started on 127.0.0.1 by the tests themselves.
Envoy is configured by a real istiod: e2e/harness/istio.py.

Binaries come from scripts/fetch-peers.sh (cached under $PORTCULLIS_CACHE, default
~/.cache/portcullis); `require_peers()` runs it once per process (a no-op when cached).
Only the standard library is used here, so the harness runs on a bare Python 3.11.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Processes, ports, work dirs and the HTTP client live in proc.py; they are re-exported here.
from .proc import REPO as ROOT
from .proc import PeerError, PeerTimeout, Proc, free_port, http, skip_e2e, stop_process, work_dir  # noqa: F401

E2E = ROOT / "e2e"
NODE_DIR = E2E / "node"
CACHE = Path(os.environ.get("PORTCULLIS_CACHE", Path.home() / ".cache" / "portcullis"))
FETCH = ROOT / "scripts" / "fetch-peers.sh"

# Users shared by Keycloak and OidcProvider.  Passwords are test-only.
DEFAULT_USERS = [
    {"username": "alice", "password": "alice-password", "email": "alice@example.com",
     "firstName": "Alice", "lastName": "Admin", "groups": ["admins"]},
    {"username": "bob", "password": "bob-password", "email": "bob@example.com",
     "firstName": "Bob", "lastName": "Staff", "groups": ["staff"]},
    {"username": "carol", "password": "carol-password", "email": "carol@example.com",
     "firstName": "Carol", "lastName": "Both", "groups": ["admins", "staff"]},
]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--host-resolver-rules=MAP * 127.0.0.1"]


# ---------------------------------------------------------------------------------------
# small helpers

_PARTS = ("apt", "envoy", "keycloak", "node")
_fetched: set = set()
_peer_vals: dict = {}
_peers_lock = threading.Lock()


def require_peers(*parts: str) -> dict:
    """Run scripts/fetch-peers.sh (idempotent, cached) for the parts not fetched yet in this
    process ("apt", "envoy", "keycloak", "node"; none = all) and return the paths:
    envoy, keycloak_home, node_dir, chromium, nginx.  Env vars PORTCULLIS_ENVOY,
    PORTCULLIS_KEYCLOAK_HOME, PORTCULLIS_NODE_DIR, PORTCULLIS_CHROMIUM, PORTCULLIS_NGINX win."""
    need = set(parts or _PARTS)
    with _peers_lock:
        missing = need - _fetched
        if missing:
            env = {**os.environ, "PORTCULLIS_FETCH_SKIP": " ".join(p for p in _PARTS if p not in missing)}
            r = subprocess.run(["bash", str(FETCH)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=1800)
            if r.returncode != 0:
                raise PeerError(f"fetch-peers.sh failed ({r.returncode}):\n{r.stderr[-4000:]}")
            for line in (CACHE / "peers.env").read_text().splitlines():
                k, _, v = line.partition("=")
                if v.strip():
                    _peer_vals[k.strip()] = v.strip()
            _fetched.update(missing)
        vals = {**_peer_vals, **{k: v for k, v in os.environ.items() if k.startswith("PORTCULLIS_") and v}}
    return {
        "envoy": vals.get("PORTCULLIS_ENVOY", ""),
        "keycloak_home": vals.get("PORTCULLIS_KEYCLOAK_HOME", ""),
        "node_dir": vals.get("PORTCULLIS_NODE_DIR", str(NODE_DIR)),
        "chromium": vals.get("PORTCULLIS_CHROMIUM") or "/usr/bin/chromium",
        "nginx": vals.get("PORTCULLIS_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx",
    }


def jwt_claims(token: str) -> dict:
    """Decode a JWT's payload WITHOUT verifying it (tests inspect what the IdP issued)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def serve_http(handler, host: str = "127.0.0.1", port: int = 0, name: str = "http", **attrs):
    """A ThreadingHTTPServer for handler on host:port (0: a free one), serving on a daemon
    thread; attrs are set on the server first (handlers see them as self.server.<attr>).
    End it with stop_http(); server_address holds the bound port."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    for k, v in attrs.items():
        setattr(server, k, v)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def stop_http(server) -> None:
    """Stops serve_forever (waits for it to return) and closes the listening socket."""
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------
# peers

class _Peer:
    """Base: a server on http://host:port; context-manager support around start()/stop()
    (a start that fails half-way stops what it started)."""
    proc: Proc | None = None
    host = "127.0.0.1"
    port = 0

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc:
            self.proc.stop()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def startup_seconds(self):
        return self.proc.ready_after if self.proc else None


# ---------------------------------------------------------------------------------------
# Echo upstream

class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portcullis-echo"

    def log_message(self, *a):
        pass

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        rec = {"method": self.command, "path": self.path, "headers": headers,
               "raw_headers": [[k, v] for k, v in self.headers.items()],
               "body": body.decode("utf-8", "replace")}
        self.server.requests.append(rec)
        if "text/html" in self.headers.get("Accept", ""):
            rows = "\n".join(f"{_esc(k)}: {_esc(v)}" for k, v in self.headers.items())
            out = (f"<!doctype html><html><head><title>echo</title></head><body><h1>echo</h1>"
                   f"<p id=method>{_esc(self.command)} {_esc(self.path)}</p><pre id=headers>\n{rows}\n</pre>"
                   f"</body></html>").encode()
            ctype = "text/html; charset=utf-8"
        else:
            out, ctype = json.dumps(rec, indent=1).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _esc(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Echo(_Peer):
    """Threaded HTTP upstream answering any path with JSON {method, path, headers (lowercased
    names, duplicates joined), raw_headers, body}, or an HTML page listing the headers when
    Accept has text/html.  `requests` keeps every request seen."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host, self.port = host, port or 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def requests(self) -> list:
        return self.server.requests if self.server else []

    def start(self):
        self.server = serve_http(_EchoHandler, self.host, self.port, "echo", requests=[])
        self.port = self.server.server_address[1]
        return self

    def stop(self):
        if self.server:
            stop_http(self.server)
            self.server = None


def _addr(x) -> tuple[str, int]:
    """Accept an Echo/peer object, 'host:port', 'http://host:port' or (host, port)."""
    if hasattr(x, "port") and hasattr(x, "host"):
        return x.host, int(x.port)
    if isinstance(x, (tuple, list)):
        return str(x[0]), int(x[1])
    s = str(x)
    if "://" in s:
        u = urllib.parse.urlsplit(s)
        return u.hostname, u.port or 80
    h, _, p = s.rpartition(":")
    return h, int(p)


# ---------------------------------------------------------------------------------------
# nginx with auth_request (the standard oauth2-proxy configuration)

NGINX_CONF = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  # big session cookies / ID tokens
  large_client_header_buffers 8 64k;
  proxy_buffer_size 64k;
  proxy_buffers 8 64k;
  proxy_busy_buffers_size 128k;

  upstream portcullis_authd {{ server {authd}; keepalive 8; }}
  upstream app {{ server {upstream}; }}

  server {{
    listen {listen};
    server_name {server_name};

    location /oauth2/ {{
      proxy_pass http://portcullis_authd;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
    }}

    location = /oauth2/auth {{
      proxy_pass http://portcullis_authd;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header Cookie $http_cookie;
      # nginx auth_request includes headers but not the body
      proxy_set_header Content-Length "";
      proxy_pass_request_body off;
    }}

    location @login {{
      return 302 /oauth2/start?rd=$scheme://$http_host$request_uri;
    }}

{extra}
    location / {{
      auth_request /oauth2/auth;
      error_page 401 = @login;

      auth_request_set $user   $upstream_http_x_auth_request_user;
      auth_request_set $email  $upstream_http_x_auth_request_email;
      auth_request_set $groups $upstream_http_x_auth_request_groups;
      auth_request_set $preferred_username $upstream_http_x_auth_request_preferred_username;
      proxy_set_header X-Auth-Request-User   $user;
      proxy_set_header X-Auth-Request-Email  $email;
      proxy_set_header X-Auth-Request-Groups $groups;
      proxy_set_header X-Auth-Request-Preferred-Username $preferred_username;

      # a refreshed session cookie from authd goes back to the browser
      auth_request_set $auth_cookie $upstream_http_set_cookie;
      add_header Set-Cookie $auth_cookie;

      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_pass http://app;
    }}
  }}
}}
"""


def nginx_user() -> str:
    """The `user` directive for root (workers would otherwise switch to nobody), else ""."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"


class Nginx(_Peer):
    """nginx (Debian) on 127.0.0.1:<port> protecting `upstream` with
    `auth_request /oauth2/auth` → `authd` ('host:port', URL, (host, port) or a peer object),
    `error_page 401 = @login` → 302 /oauth2/start?rd=..., /oauth2/ proxied to authd.
    `extra` is raw config inserted into the server block (e.g. more locations)."""

    def __init__(self, authd, upstream, *, port: int | None = None, server_name: str = "_",
                 extra: str = "", nginx_bin: str | None = None):
        self.authd, self.upstream = authd, upstream
        self.port = port or free_port()
        self.server_name, self.extra = server_name, extra
        self.nginx_bin = nginx_bin
        self.dir = work_dir("nginx")
        self.conf_path = self.dir / "nginx.conf"
        self.proc = None

    def render(self) -> str:
        a_host, a_port = _addr(self.authd)
        u_host, u_port = _addr(self.upstream)
        return NGINX_CONF.format(user=nginx_user(), dir=self.dir, authd=f"{a_host}:{a_port}",
                                 upstream=f"{u_host}:{u_port}", listen=f"{self.host}:{self.port}",
                                 server_name=self.server_name, extra=self.extra)

    def _write(self):
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.conf_path.write_text(self.render())

    def start(self, timeout: float = 20):
        self._write()
        binary = self.nginx_bin or require_peers("apt")["nginx"]
        argv = [binary, "-p", self.dir, "-c", self.conf_path, "-e", self.dir / "error.log"]
        r = subprocess.run(argv + ["-t", "-q"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise PeerError(f"nginx -t failed:\n{r.stderr}\n{self.conf_path.read_text()}")
        self.proc = Proc("nginx", argv, log_path=self.dir / "nginx.out", cwd=self.dir).start()
        self.proc.wait_port(self.port, timeout=timeout)
        return self

    def reconfigure(self, authd=None, upstream=None, extra: str | None = None):
        """Rewrite nginx.conf and reload (SIGHUP) without changing the port."""
        if authd is not None:
            self.authd = authd
        if upstream is not None:
            self.upstream = upstream
        if extra is not None:
            self.extra = extra
        self._write()
        os.kill(self.proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        return self

    def error_log(self) -> str:
        p = self.dir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""


# ---------------------------------------------------------------------------------------
# nginx as ingress-nginx renders it for the auth-url / auth-signin annotations

# The README's annotations: auth-url points at authd's Service, auth-signin at /oauth2/start on
# the app's own host (Debian's nginx has no set_escape_uri, so rd is the raw request URI).
INGRESS_AUTH_SERVICE = "portcullis-authd.portcullis-system.svc.cluster.local"
INGRESS_RESPONSE_HEADERS = ["X-Auth-Request-User", "X-Auth-Request-Email",
                            "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username"]


def ingress_auth_location(name: str, auth_host: str, target: str, extra: str = "") -> str:
    """The internal location ingress-nginx's nginx.tmpl renders for an auth-url: the client's
    headers passed on, Host the auth-url's host name, X-Original-URL from $http_host, then
    `extra` (auth-proxy-set-headers lines), proxy_pass to target (the auth-url, its authority
    resolved to an address as cluster DNS would)."""
    return f"""
    location = {name} {{
      internal;
      access_log off;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header Host {auth_host};
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
      proxy_buffering off;
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
      proxy_request_buffering on;
      proxy_ssl_server_name on;
      proxy_pass_request_headers on;
{extra}      proxy_http_version 1.1;
      set $target {target};
      proxy_pass $target;
    }}
"""


class IngressNginx(Nginx):
    """nginx (Debian) shaped like the config ingress-nginx's nginx.tmpl generates: one `server`
    per Ingress host, its `location /` annotated with auth-url (authd's /oauth2/auth, addressed
    by its Service name), auth-signin ($scheme://$http_host/oauth2/start?rd=$request_uri) and
    auth-response-headers, and a second Ingress per host routing /oauth2 to authd unprotected.

    The auth location is ingress-nginx's: `proxy_pass_request_headers on` (the client's own
    X-Forwarded-Host, X-Original-URI, ... reach authd unchanged), `Host` the auth-url's host,
    `X-Original-URL $scheme://$http_host$request_uri`, X-Original-Method, X-Sent-From,
    X-Real-IP, X-Forwarded-For, X-Auth-Request-Redirect, X-Forwarded-Proto cleared.
    auth_proxy_set_headers: {host: {header: value}} adds the lines the auth-proxy-set-headers
    annotation renders for that host (`proxy_set_header 'Name' 'value';`)."""

    def __init__(self, authd, upstream, hosts: list[str], *, port: int | None = None,
                 auth_proxy_set_headers: dict[str, dict[str, str]] | None = None,
                 nginx_bin: str | None = None):
        super().__init__(authd, upstream, port=port, nginx_bin=nginx_bin)
        self.hosts = list(hosts)
        self.auth_proxy_set_headers = auth_proxy_set_headers or {}

    def _server(self, i: int, host: str, authd: str) -> str:
        auth, signin = f"/_external-auth-{i}", f"@external-auth-{i}-signin"
        extra = "".join(f"      proxy_set_header '{k}' '{v}';\n"
                        for k, v in sorted(self.auth_proxy_set_headers.get(host, {}).items()))
        response = "".join(f"      auth_request_set $authHeader{j} $upstream_http_{h.lower().replace('-', '_')};\n"
                           f"      proxy_set_header '{h}' $authHeader{j};\n"
                           for j, h in enumerate(INGRESS_RESPONSE_HEADERS))
        forwarded = ("      proxy_set_header Host $best_http_host;\n"
                     "      proxy_set_header X-Real-IP $remote_addr;\n"
                     "      proxy_set_header X-Forwarded-For $remote_addr;\n"
                     "      proxy_set_header X-Forwarded-Host $best_http_host;\n"
                     "      proxy_set_header X-Forwarded-Port $server_port;\n"
                     "      proxy_set_header X-Forwarded-Proto $pass_access_scheme;\n"
                     "      proxy_set_header X-Scheme $pass_access_scheme;\n")
        return f"""
  server {{
    server_name {host};
    listen {self.host}:{self.port};
{ingress_auth_location(auth, INGRESS_AUTH_SERVICE, f"http://{authd}/oauth2/auth", extra)}
    location {signin} {{
      internal;
      add_header Set-Cookie $auth_cookie;
      return 302 $scheme://$http_host/oauth2/start?rd=$request_uri;
    }}

    location / {{
      set $pass_access_scheme $scheme;
      set $best_http_host $http_host;
      auth_request {auth};
      auth_request_set $auth_cookie $upstream_http_set_cookie;
      add_header Set-Cookie $auth_cookie;
{response}      error_page 401 = {signin};
{forwarded}      proxy_pass http://app;
    }}

    location /oauth2/ {{
      set $pass_access_scheme $scheme;
      set $best_http_host $http_host;
{forwarded}      proxy_pass http://{authd};
    }}
  }}
"""

    def render(self) -> str:
        a_host, a_port = _addr(self.authd)
        u_host, u_port = _addr(self.upstream)
        authd = f"{a_host}:{a_port}"
        temp = "".join(f"  {k}_temp_path {self.dir}/tmp/{k};\n"
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        servers = "".join(self._server(i, h, authd) for i, h in enumerate(self.hosts))
        return (f"{nginx_user()}daemon off;\nmaster_process on;\nworker_processes 1;\n"
                f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log info;\n"
                "events { worker_connections 512; }\nhttp {\n"
                f"  access_log {self.dir}/access.log;\n{temp}"
                "  large_client_header_buffers 8 64k;\n  proxy_buffer_size 64k;\n"
                "  proxy_buffers 8 64k;\n  proxy_busy_buffers_size 128k;\n"
                f"  upstream app {{ server {u_host}:{u_port}; }}\n{servers}}}\n")


# ---------------------------------------------------------------------------------------
# Keycloak

def keycloak_realm(realm: str, clients: list[dict], users: list[dict]) -> dict:
    """Realm JSON: groups, users (password, email, groups), confidential clients with a
    group-membership mapper (names, no full path) into `groups` of ID/access/userinfo tokens.
    client keys: clientId, secret, redirectUris, directAccessGrants, serviceAccounts,
    publicClient, pkce ('S256'), audiences (extra aud values), attributes."""
    groups = sorted({g for u in users for g in u.get("groups", [])})
    mapper = {"name": "groups", "protocol": "openid-connect", "protocolMapper": "oidc-group-membership-mapper",
              "config": {"full.path": "false", "claim.name": "groups", "id.token.claim": "true",
                         "access.token.claim": "true", "userinfo.token.claim": "true",
                         "introspection.token.claim": "true"}}
    kc_clients = []
    for c in clients:
        mappers = [mapper]
        for aud in c.get("audiences", []):
            mappers.append({"name": f"aud-{aud}", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
                            "config": {"included.custom.audience": aud, "access.token.claim": "true",
                                       "id.token.claim": "false", "introspection.token.claim": "true"}})
        attrs = {"post.logout.redirect.uris": "+", **c.get("attributes", {})}
        if c.get("pkce"):
            attrs["pkce.code.challenge.method"] = c["pkce"]
        kc_clients.append({
            "clientId": c["clientId"], "enabled": True, "protocol": "openid-connect",
            "publicClient": bool(c.get("publicClient", False)),
            "clientAuthenticatorType": "client-secret", "secret": c.get("secret"),
            "redirectUris": c.get("redirectUris", []), "webOrigins": ["+"],
            "standardFlowEnabled": bool(c.get("standardFlow", True)),
            "directAccessGrantsEnabled": bool(c.get("directAccessGrants", False)),
            "serviceAccountsEnabled": bool(c.get("serviceAccounts", False)),
            "attributes": attrs, "protocolMappers": mappers,
        })
    return {
        "realm": realm, "enabled": True, "sslRequired": "none",
        "accessTokenLifespan": 300, "registrationAllowed": False, "loginWithEmailAllowed": True,
        "groups": [{"name": g} for g in groups],
        "users": [{
            "username": u["username"], "enabled": True, "email": u.get("email"),
            "emailVerified": u.get("emailVerified", True),
            "firstName": u.get("firstName", u["username"].title()), "lastName": u.get("lastName", "Test"),
            "credentials": [{"type": "password", "value": u["password"], "temporary": False}],
            "groups": [f"/{g}" for g in u.get("groups", [])],
        } for u in users],
        "clients": kc_clients,
    }


class Keycloak(_Peer):
    """Keycloak `start-dev --import-realm` on 127.0.0.1:<port> with realm `realm` (default
    `main`), in-memory H2, a private home (symlinks into the cached distribution, own data/).
    clients: list of dicts (see keycloak_realm); a service-account client `robot`/`robot-secret`
    is added unless a client with serviceAccounts is given.  users default to DEFAULT_USERS.
    Admin console user admin/admin."""

    def __init__(self, clients: list[dict], users: list[dict] | None = None, *, realm: str = "main",
                 port: int | None = None, kc_home: str | None = None, extra_args: list[str] = (),
                 java_opts: str = "-XX:TieredStopAtLevel=1"):
        self.clients = list(clients)
        if not any(c.get("serviceAccounts") for c in self.clients):
            self.clients.append({"clientId": "robot", "secret": "robot-secret", "serviceAccounts": True,
                                 "standardFlow": False})
        self.users = users if users is not None else DEFAULT_USERS
        self.realm = realm
        self.port = port or free_port()
        self.management_port = free_port()
        self.kc_home = kc_home
        self.extra_args = list(extra_args)
        self.java_opts = java_opts        # C1 only: faster start-up on 2 busy cores
        self.dir = work_dir("keycloak")
        self.proc = None

    @property
    def base_url(self):
        return self.url

    @property
    def issuer(self):
        return f"{self.base_url}/realms/{self.realm}"

    def issuer_for(self, host: str) -> str:
        """frontendUrl is unset, so the issuer follows the Host the client used."""
        return f"http://{host}:{self.port}/realms/{self.realm}"

    @property
    def token_endpoint(self):
        return f"{self.issuer}/protocol/openid-connect/token"

    def _make_home(self) -> Path:
        src = Path(self.kc_home or require_peers("keycloak")["keycloak_home"])
        home = self.dir / "home"
        (home / "data" / "import").mkdir(parents=True)
        for name in ("lib", "themes", "providers"):
            (home / name).symlink_to(src / name)
        # kc.sh resolves its own path to find the home: copy it (not the 14 MB client jars)
        shutil.copytree(src / "bin", home / "bin", ignore=shutil.ignore_patterns("client"))
        (home / "bin" / "client").symlink_to(src / "bin" / "client")
        shutil.copytree(src / "conf", home / "conf")
        realm = keycloak_realm(self.realm, self.clients, self.users)
        (home / "data" / "import" / f"{self.realm}-realm.json").write_text(json.dumps(realm, indent=1))
        return home

    def start(self, timeout: float = 300):
        home = self._make_home()
        argv = [home / "bin" / "kc.sh", "start-dev", "--import-realm", "--db=dev-mem",
                f"--http-port={self.port}", f"--http-host={self.host}",
                f"--http-management-port={self.management_port}", "--health-enabled=true",
                "--cache=local", "--hostname-strict=false", *self.extra_args]
        env = {"KC_BOOTSTRAP_ADMIN_USERNAME": "admin", "KC_BOOTSTRAP_ADMIN_PASSWORD": "admin",
               "JAVA_OPTS_APPEND": self.java_opts}
        self.proc = Proc("keycloak", argv, env=env, log_path=self.dir / "keycloak.log", cwd=home).start()
        self.proc.wait_http(f"{self.issuer}/.well-known/openid-configuration", timeout,
                            ok=lambda s: s == 200)
        return self

    def discovery(self) -> dict:
        return json.loads(http("GET", f"{self.issuer}/.well-known/openid-configuration")[2])

    def _token(self, form: dict) -> dict:
        status, _, body = http("POST", self.token_endpoint, data=form,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise PeerError(f"token endpoint {status}: {body.decode(errors='replace')}")
        return json.loads(body)

    def token_password(self, client: str, secret: str, user: str, password: str,
                       scope: str = "openid email profile") -> dict:
        """Resource-owner password grant (client needs directAccessGrants)."""
        return self._token({"grant_type": "password", "client_id": client, "client_secret": secret,
                            "username": user, "password": password, "scope": scope})

    def token_client_credentials(self, client: str = "robot", secret: str = "robot-secret") -> dict:
        return self._token({"grant_type": "client_credentials", "client_id": client,
                            "client_secret": secret})

    def admin_token(self) -> str:
        status, _, body = http("POST", f"{self.base_url}/realms/master/protocol/openid-connect/token",
                               data={"grant_type": "password", "client_id": "admin-cli",
                                     "username": "admin", "password": "admin"})
        return json.loads(body)["access_token"]


# ---------------------------------------------------------------------------------------
# oidc-provider (Node)

class OidcProvider(_Peer):
    """A certified OP (npm oidc-provider) via e2e/node/idp.mjs on 127.0.0.1:<port>.
    clients: [{clientId, secret, redirectUris, tokenEndpointAuthMethod ('client_secret_basic'
    default, or 'client_secret_post'), serviceAccounts (client_credentials),
    postLogoutRedirectUris}]; users default to DEFAULT_USERS (login form checks passwords);
    PKCE S256 required; `groups` (and email, preferred_username, name) in the ID token;
    refresh tokens for clients; ttl: seconds per oidc-provider ttl name (AccessToken, IdToken,
    RefreshToken, Session, Interaction, Grant); end_session=False: discovery names no
    end_session_endpoint (RP-initiated logout off)."""

    def __init__(self, clients: list[dict], users: list[dict] | None = None, *, port: int | None = None,
                 issuer_host: str = "127.0.0.1", ttl: dict | None = None, node: str = "node",
                 end_session: bool = True):
        self.clients, self.users = clients, users if users is not None else DEFAULT_USERS
        self.port = port or free_port()
        self.issuer = f"http://{issuer_host}:{self.port}"
        self.ttl, self.node = ttl or {}, node
        self.end_session = end_session
        self.dir = work_dir("idp")
        self.proc = None

    # node takes its time to load oidc-provider on a busy two-core machine: a bound, not a wait
    def start(self, timeout: float = 90, first: float = 30):
        """Starts node on self.port and waits for discovery. A start that is still not up
        after `first` seconds (0.5 s is usual, a few seconds under load) is recorded — its
        threads' states and stacks go to its log — stopped and started once more on the same
        port, within `timeout` in all: a node that stalls at start-up (seen a few times in
        hundreds of starts, not explained) does not fail a module. A warning names the log."""
        node_dir = Path(require_peers("node")["node_dir"])
        cfg = {"port": self.port, "host": self.host, "issuer": self.issuer, "users": self.users,
               "clients": self.clients, "ttl": self.ttl, "rpInitiatedLogout": self.end_session}
        cfg_path = self.dir / "idp.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        deadline = time.monotonic() + timeout
        while True:
            self.proc = Proc("oidc-provider", [self.node, "--report-on-signal",
                                               "--report-signal=SIGUSR2",
                                               f"--report-directory={self.dir}",
                                               node_dir / "idp.mjs", cfg_path],
                             log_path=self.dir / "idp.log", cwd=node_dir,
                             report_signal=signal.SIGUSR2).start()
            left = deadline - time.monotonic()
            again = left > first + 5
            try:
                self.proc.wait_http(f"{self.url}/.well-known/openid-configuration",
                                    first if again else left, ok=lambda s: s == 200)
                return self
            except PeerTimeout:
                if not again:
                    raise
                warnings.warn(f"oidc-provider on port {self.port} was not up after {first:.0f} s "
                              f"and was started again; what it was doing: {self.proc.log_path}")

    def discovery(self) -> dict:
        return json.loads(http("GET", f"{self.url}/.well-known/openid-configuration")[2])

    def token_client_credentials(self, client: str, secret: str, scope: str | None = None) -> dict:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
        status, _, body = http("POST", f"{self.url}/token", data=form,
                               headers={"Authorization": f"Basic {basic}"})
        if status != 200:
            raise PeerError(f"token endpoint {status}: {body.decode(errors='replace')}")
        return json.loads(body)


# ---------------------------------------------------------------------------------------
# headless Chromium through playwright-core

class BrowserError(PeerError):
    pass


class Browser:
    """Runs e2e/node/browser.mjs: one fresh Chromium profile per run().  Steps (JSON list):
      {"goto": url}                         navigate (status = final document response)
      {"login": {"username", "password"}}   fill the Keycloak / oidc-provider form and submit
      {"expect_status": 200}                fail unless the last navigation had that status
      {"text": "substring"}                 fail unless the page text contains it
      {"expect_url": "substring"}           fail unless the current URL contains it
      {"click": selector} / {"fill": {selector: value}} / {"wait_for_url": "substring"}
      {"fetch": url, "method", "headers"}   request with the page's cookies (status + body)
      {"open_tabs": [[steps], [steps]]}     run step lists in new tabs in parallel
      {"screenshot": path} / {"sleep": ms}
      {"save_text": true}                   keep the page's text in this step's record ("text")
      {"viewport": {"width", "height"}}     resize the page (e.g. 320 px wide)
    run() returns {ok, error, url, status, text, cookies, steps, tabs}; check=True raises
    BrowserError when ok is false."""

    def __init__(self, *, chromium: str | None = None, node: str = "node", timeout: float = 90,
                 action_timeout_ms: int = 15000, args: list[str] | None = None):
        self.chromium, self.node, self.timeout = chromium, node, timeout
        self.action_timeout_ms = action_timeout_ms
        self.args = args or CHROMIUM_ARGS
        self.last_run_seconds = None

    def run(self, steps: list, *, check: bool = True, timeout: float | None = None) -> dict:
        peers = require_peers("apt", "node")
        node_dir = Path(peers["node_dir"])
        payload = {"steps": steps, "executablePath": self.chromium or peers["chromium"],
                   "args": self.args, "timeout": self.action_timeout_ms}
        t0 = time.monotonic()
        # Its own process group: a timeout stops node and the Chromium it started, by pid.
        p = subprocess.Popen([self.node, node_dir / "browser.mjs"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=node_dir,
                             start_new_session=True)
        try:
            out, err = p.communicate(json.dumps(payload), timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            stop_process(p, timeout=5)
            _, err = p.communicate(timeout=10)
            raise BrowserError(f"browser.mjs timed out; stderr:\n{(err or '')[-3000:]}")
        finally:
            stop_process(p, timeout=5)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        self.last_run_seconds = time.monotonic() - t0
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise BrowserError(f"browser.mjs exited {r.returncode} without a result:\n"
                               f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        result = json.loads(lines[-1])
        result["stderr"] = r.stderr
        if check and not result.get("ok"):
            raise BrowserError(f"browser scenario failed: {result.get('error')}\nurl={result.get('url')} "
                               f"status={result.get('status')}\ntext={str(result.get('text'))[:1500]}\n"
                               f"steps={json.dumps(result.get('steps'))[:3000]}\nstderr={r.stderr[-2000:]}")
        return result
