"""nginx (Debian) configured from Ingress objects the way ingress-nginx renders them.

ingress-nginx turns the Ingresses of its class into one nginx config: a `server` per rule
host (the Ingresses of one host merged), a `location` per path, and for an Ingress with the
`auth-url` annotation, per location:

  location = /_external-auth-<base64url(path)>-<pathType> {   # the auth subrequest
      internal;
      proxy_pass_request_body off;  Content-Length "", X-Forwarded-Proto "", X-Request-ID
      Host <auth-url's host name>;  X-Original-URL $scheme://$http_host$request_uri;
      X-Original-Method, X-Sent-From, X-Real-IP, X-Forwarded-For, X-Auth-Request-Redirect
      proxy_pass_request_headers on;        # the client's own headers go to the authorizer
      set $target <auth-url>; proxy_pass $target;
  }
  location @<sha1(path + auth-signin)> { internal; add_header Set-Cookie $auth_cookie;
      return 302 <auth-signin, with ?rd=... appended unless it names rd>; }
  location <path> {
      auth_request /_external-auth-...;
      auth_request_set $auth_cookie $upstream_http_set_cookie; add_header Set-Cookie ...;
      auth_request_set $authHeader<i> $upstream_http_<name>; proxy_set_header '<Name>'
          $authHeader<i>;                   # one pair per auth-response-headers entry
      set_escape_uri $escaped_request_uri $request_uri;
      error_page 401 = @<sha1...>;
      ... the usual proxy headers, proxy_pass to the backend
  }

(rootfs/etc/nginx/template/nginx.tmpl and internal/ingress/controller/template/template.go
of kubernetes/ingress-nginx; the annotation parser splits auth-response-headers on commas and
denies the location, `return 503`, when a name has a character outside [A-Za-z0-9_-]).
What is not rendered: Lua (balancer, plugins), TLS, and auth-keepalive (the Lua
access_by_lua_block variant). set_escape_uri comes from Debian's libnginx-mod-http-set-misc.

Service names resolve through `services`, standing in for cluster DNS and kube-proxy:
{"<name>.<namespace>:<port>": address} for backends and {"<host>:<port>": address} for the
auth-url's authority (both "host:port" strings or (host, port)).
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse

from .peers import Nginx, _addr, ingress_auth_location, nginx_user

MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so",
           "/usr/lib/nginx/modules/ngx_http_set_misc_module.so")
ANN = "nginx.ingress.kubernetes.io/"
HEADER_NAME = re.compile(r"^[a-zA-Z\d\-_]+$")


def _auth_location(path: str, path_type: str) -> str:
    b64 = base64.urlsafe_b64encode(path.encode()).decode().replace("=", "")
    return f"/_external-auth-{b64}-{path_type}"


def _signin_location(path: str, signin: str) -> str:
    return "@" + hashlib.sha1((path + signin).encode()).hexdigest()


def _signin_url(signin: str, param: str = "rd") -> str:
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(signin).query)
    if not q:
        return f"{signin}?{param}=$pass_access_scheme://$http_host$escaped_request_uri"
    if q.get(param, [""])[0]:
        return signin
    return f"{signin}&{param}=$pass_access_scheme://$http_host$escaped_request_uri"


def _response_headers(value: str) -> list[str] | None:
    """auth-response-headers as ingress-nginx parses it; None when it denies the location."""
    out = []
    for h in value.split(","):
        h = h.strip()
        if h:
            if not HEADER_NAME.match(h):
                return None
            out.append(h)
    return out


def _nginx_locations(path: str, path_type: str) -> list[str]:
    """ingress-nginx's locations for a path: Prefix /x is `/x/` and `= /x`."""
    if path_type == "Exact":
        return [f"= {path}"]
    if path_type == "Prefix" and path != "/" and not path.endswith("/"):
        return [f"{path}/", f"= {path}"]
    return [path]


class AnnotatedIngressNginx(Nginx):
    """nginx on 127.0.0.1:<port> rendered from `ingresses` (objects as the apiserver returns
    them) of ingress class `ingress_class`; `services` maps Service names to addresses."""

    def __init__(self, ingresses: list[dict], services: dict, *, ingress_class: str = "nginx",
                 port: int | None = None):
        super().__init__(None, None, port=port)
        self.ingresses, self.ingress_class = ingresses, ingress_class
        self.services = {k: "%s:%d" % _addr(v) for k, v in services.items()}
        self.upstreams: dict[str, str] = {}

    # -- resolution ----------------------------------------------------------------------

    def _backend(self, ns: str, backend: dict) -> str:
        svc = backend["service"]
        key = f"{svc['name']}.{ns}:{svc['port']['number']}"
        name = re.sub(r"[^A-Za-z0-9]", "-", key)
        self.upstreams[name] = self.services[key]
        return name

    def _target(self, auth_url: str) -> str:
        u = urllib.parse.urlsplit(auth_url)
        addr = self.services[f"{u.hostname}:{u.port or 80}"]
        return urllib.parse.urlunsplit((u.scheme, addr, u.path, u.query, ""))

    # -- rendering -----------------------------------------------------------------------

    def _servers(self) -> dict[str, list[tuple]]:
        servers: dict[str, list[tuple]] = {}
        for ing in self.ingresses:
            spec, md = ing.get("spec", {}), ing["metadata"]
            cls = spec.get("ingressClassName") or md.get("annotations", {}).get(
                "kubernetes.io/ingress.class")
            if cls != self.ingress_class:
                continue
            ann = {k[len(ANN):]: v for k, v in (md.get("annotations") or {}).items()
                   if k.startswith(ANN)}
            for rule in spec.get("rules", []):
                for p in rule.get("http", {}).get("paths", []):
                    servers.setdefault(rule.get("host", "_"), []).append(
                        (p.get("path", "/"), p.get("pathType", "Prefix"),
                         self._backend(md["namespace"], p["backend"]), ann))
        return servers

    @staticmethod
    def _forwarded() -> str:
        return ("      proxy_set_header Host $best_http_host;\n"
                "      proxy_set_header X-Request-ID $req_id;\n"
                "      proxy_set_header X-Real-IP $remote_addr;\n"
                "      proxy_set_header X-Forwarded-For $remote_addr;\n"
                "      proxy_set_header X-Forwarded-Host $best_http_host;\n"
                "      proxy_set_header X-Forwarded-Port $pass_port;\n"
                "      proxy_set_header X-Forwarded-Proto $pass_access_scheme;\n"
                "      proxy_set_header X-Forwarded-Scheme $pass_access_scheme;\n"
                "      proxy_set_header X-Scheme $pass_access_scheme;\n"
                "      proxy_set_header Proxy \"\";\n")

    def _auth_blocks(self, path: str, path_type: str, ann: dict) -> tuple[str, str]:
        """The auth and sign-in locations, and the lines of the app's location."""
        auth = _auth_location(path, path_type)
        url = ann["auth-url"]
        host = urllib.parse.urlsplit(url).hostname
        headers = _response_headers(ann.get("auth-response-headers", ""))
        if headers is None:
            return "", "      return 503;\n"
        blocks = ingress_auth_location(auth, host, self._target(url))
        lines = (f"      auth_request {auth};\n"
                 "      auth_request_set $auth_cookie $upstream_http_set_cookie;\n"
                 "      add_header Set-Cookie $auth_cookie;\n")
        for i, h in enumerate(headers):
            var = h.lower().replace("-", "_")
            lines += (f"      auth_request_set $authHeader{i} $upstream_http_{var};\n"
                      f"      proxy_set_header '{h}' $authHeader{i};\n")
        signin = ann.get("auth-signin")
        if signin:
            at = _signin_location(path, signin)
            blocks += f"""
    location {at} {{
      internal;
      add_header Set-Cookie $auth_cookie;
      return 302 {_signin_url(signin, ann.get("auth-signin-redirect-param") or "rd")};
    }}
"""
            lines += ("      set_escape_uri $escaped_request_uri $request_uri;\n"
                      f"      error_page 401 = {at};\n")
        return blocks, lines

    def _server(self, host: str, locations: list[tuple]) -> str:
        body = ""
        for path, path_type, upstream, ann in locations:
            blocks, auth = self._auth_blocks(path, path_type, ann) if ann.get("auth-url") else ("", "")
            body += blocks
            for loc in _nginx_locations(path, path_type):
                body += f"""
    location {loc} {{
      set $pass_access_scheme $scheme;
      set $pass_server_port $server_port;
      set $best_http_host $http_host;
      set $pass_port $pass_server_port;
{auth}{self._forwarded()}      proxy_http_version 1.1;
      proxy_pass http://{upstream};
    }}
"""
        return f"""
  server {{
    server_name {host};
    listen {self.host}:{self.port};
{body}  }}
"""

    def render(self) -> str:
        self.upstreams = {}
        servers = "".join(self._server(h, locs) for h, locs in sorted(self._servers().items()))
        upstreams = "".join(f"  upstream {n} {{ server {a}; }}\n"
                            for n, a in sorted(self.upstreams.items()))
        temp = "".join(f"  {k}_temp_path {self.dir}/tmp/{k};\n"
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        modules = "".join(f"load_module {m};\n" for m in MODULES)
        return (f"{modules}{nginx_user()}daemon off;\nmaster_process on;\nworker_processes 1;\n"
                f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log info;\n"
                "events { worker_connections 512; }\nhttp {\n"
                f"  access_log {self.dir}/access.log;\n{temp}"
                "  map $http_x_request_id $req_id { default $http_x_request_id; \"\" $request_id; }\n"
                "  large_client_header_buffers 8 64k;\n  proxy_buffer_size 64k;\n"
                "  proxy_buffers 8 64k;\n  proxy_busy_buffers_size 128k;\n"
                f"{upstreams}{servers}}}\n")
