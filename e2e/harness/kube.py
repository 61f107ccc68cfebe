"""A real kube-apiserver and etcd on 127.0.0.1 for end-to-end tests.

Both come from the `kubeserver` binary that scripts/build-e2e-tools.sh builds
into the cache (DESIGN.md §6). The flags follow controller-runtime's envtest:
the apiserver self-signs its serving certificate into --cert-dir, clients
authenticate with static bearer tokens, authorization is RBAC.

    with ApiServer() as api:
        api.install_istio_crds()
        api.kubectl("apply", "-f", "-", input=manifest)
        api.restart()            # same port, same etcd: watches see a disconnect
        api.service_account_kubeconfig("ns", "sa")   # a pod's token: RBAC decides

    ApiServer(users={"alice": ["team-a"]}) adds static-token users (name: groups);
    api.user_kubeconfig("alice") is theirs, so RBAC and admission see a real user.

Every child process is stopped by its pid (SIGTERM, bounded wait, SIGKILL; proc.Proc).
Logs stay in files under the work dir (e2e/.work/kube-*, removed by stop() unless
PORTCULLIS_KEEP_TMP=1) and are printed when startup fails.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .proc import REPO, PeerError, Proc, free_port, skip_e2e, work_dir

BUILD_SCRIPT = REPO / "scripts" / "build-e2e-tools.sh"

ADMIN_USER = "portcullis-admin"
CONTROLLER_USER = "portcullis-controller"


@functools.cache
def e2e_tools() -> dict[str, str]:
    """Paths of the cached peers, building them first when missing.

    Keys: PORTCULLIS_KUBESERVER, PORTCULLIS_ISTIO_VALIDATE, PORTCULLIS_ISTIO_CRDS,
    PORTCULLIS_ISTIOD, PORTCULLIS_GATEWAY_API_CRDS. Each may be overridden through the
    environment variable of the same name; the build script only runs when one of them is
    not set.
    """
    keys = ("PORTCULLIS_KUBESERVER", "PORTCULLIS_ISTIO_VALIDATE", "PORTCULLIS_ISTIO_CRDS",
            "PORTCULLIS_ISTIOD", "PORTCULLIS_GATEWAY_API_CRDS")
    tools = {k: os.environ[k] for k in keys if os.environ.get(k)}
    if len(tools) == len(keys):
        return tools
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-env"],
        stdout=subprocess.PIPE,
        stderr=None,  # progress lines go straight to the terminal
        text=True,
        check=True,
        timeout=3600,  # a cold build compiles kube-apiserver, etcd, istio-validate and istiod
    )
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in keys:
            tools.setdefault(key, value)
    return tools


# A peer that did not come up; the message holds the end of its log.
StartError = PeerError


CONTROLLER_BINDINGS = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis-controller-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-controller}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: portcullis-controller-user, namespace: portcullis-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
"""
GATEWAY_BINDING = """apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: portcullis-controller-gateway-user, namespace: istio-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-controller-gateway}
subjects: [{kind: User, name: portcullis-controller, apiGroup: rbac.authorization.k8s.io}]
"""


class ApiServer:
    """etcd + kube-apiserver for one test session (or module).

    Attributes once started: url, port, token (admin, group system:masters),
    controller_token (user portcullis-controller, no groups, so RBAC decides),
    kubeconfig and controller_kubeconfig (paths), ca_file, workdir.
    """

    def __init__(self, kubeserver: str | None = None, ready_timeout: float = 90.0,
                 users: dict[str, list[str]] | None = None):
        self.kubeserver = kubeserver
        self.users = {name: (secrets.token_hex(16), list(groups))
                      for name, groups in (users or {}).items()}
        self.ready_timeout = ready_timeout
        self.workdir: Path | None = None
        self.etcd: Proc | None = None
        self.apiserver: Proc | None = None
        self.token = secrets.token_hex(16)
        self.controller_token = secrets.token_hex(16)
        self.port = 0
        self.etcd_port = 0
        self.url = ""
        self.kubeconfig = ""
        self.controller_kubeconfig = ""
        self.ca_file = ""
        self._keep = os.environ.get("PORTCULLIS_KEEP_TMP") == "1"

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> "ApiServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self.kubeserver is None:
            self.kubeserver = e2e_tools()["PORTCULLIS_KUBESERVER"]
        self.workdir = work_dir("kube")
        try:
            self._write_files()
            # A port picked by free_port() can be taken before the child
            # binds it; a few attempts with fresh ports make that harmless.
            for attempt in range(3):
                try:
                    self._start_etcd()
                    self.port = free_port()
                    self.url = f"https://127.0.0.1:{self.port}"
                    self._start_apiserver()
                    break
                except StartError as e:
                    if "address already in use" not in str(e) or attempt == 2:
                        raise
                    self._stop_children()
            self._write_kubeconfigs()
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Stop only the apiserver and start it again on the same port and etcd."""
        self.apiserver.stop()
        self.apiserver = None
        self._start_apiserver()

    def stop(self) -> None:
        self._stop_children()
        if self.workdir and not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_children(self) -> None:
        for child in (self.apiserver, self.etcd):
            if child is not None:
                child.stop()
        self.apiserver = self.etcd = None

    # -- setup ---------------------------------------------------------------

    def _write_files(self) -> None:
        wd = self.workdir
        (wd / "certs").mkdir()
        # The service-account signing key, as envtest generates one.
        subprocess.run(
            ["openssl", "genrsa", "-out", str(wd / "sa.key"), "2048"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(wd / "sa.key"), "-pubout", "-out", str(wd / "sa.pub")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # token,user,uid,"group,..." — see kube-apiserver --token-auth-file.
        (wd / "tokens.csv").write_text(
            f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{self.controller_token},{CONTROLLER_USER},{CONTROLLER_USER}\n"
            + "".join(f'{token},{name},{name},"{",".join(groups)}"\n'
                      for name, (token, groups) in self.users.items())
        )
        os.chmod(wd / "tokens.csv", 0o600)

    def _spawn(self, name: str, args: list[str]) -> Proc:
        """kubeserver <name> in its own session (a Ctrl-C reaches the test, not the peers),
        logging to <workdir>/<name>.log."""
        return Proc(name, [self.kubeserver, name, *args], cwd=self.workdir,
                    log_path=self.workdir / f"{name}.log").start()

    def _start_etcd(self) -> None:
        self.etcd_port = free_port()
        peer = free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        data = self.workdir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        self.etcd = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self.etcd.wait(lambda: self._etcd_healthy(client_url), "etcd /health",
                       self.ready_timeout, interval=0.2)

    def _apiserver_args(self) -> list[str]:
        wd = self.workdir
        return [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={wd / 'certs'}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--service-account-issuer={self.url}/",
            f"--service-account-key-file={wd / 'sa.pub'}",
            f"--service-account-signing-key-file={wd / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            f"--token-auth-file={wd / 'tokens.csv'}",
            "--allow-privileged=true",
            # Without kube-controller-manager no token controller creates
            # default ServiceAccounts; envtest disables this plugin too.
            "--disable-admission-plugins=ServiceAccount",
        ]

    def _start_apiserver(self) -> None:
        self.apiserver = self._spawn("kube-apiserver", self._apiserver_args())
        self.apiserver.wait(self._apiserver_ready, "kube-apiserver /readyz", self.ready_timeout,
                            interval=0.2)
        self.ca_file = str(self.workdir / "certs" / "apiserver.crt")

    @staticmethod
    def _etcd_healthy(client_url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except (OSError, ssl.SSLError):
            return False

    def _write_kubeconfigs(self) -> None:
        self.kubeconfig = str(self.workdir / "kubeconfig")
        self.controller_kubeconfig = str(self.workdir / "kubeconfig-controller")
        for path, user, token in (
            (self.kubeconfig, ADMIN_USER, self.token),
            (self.controller_kubeconfig, CONTROLLER_USER, self.controller_token),
        ):
            self._write_kubeconfig(path, user, token)

    def _write_kubeconfig(self, path: str, user: str, token: str) -> None:
        # kubeconfig is YAML; JSON is YAML, so no YAML library is needed.
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {"server": self.url, "certificate-authority": self.ca_file},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        Path(path).write_text(json.dumps(cfg, indent=2) + "\n")
        os.chmod(path, 0o600)

    def user_kubeconfig(self, name: str) -> str:
        """Path of a kubeconfig for one of the users given to the constructor."""
        path = str(self.workdir / f"kubeconfig-user-{name}")
        if not Path(path).exists():
            self._write_kubeconfig(path, name, self.users[name][0])
        return path

    def service_account_kubeconfig(self, namespace: str, name: str, hours: int = 2) -> str:
        """Path of a kubeconfig with a token of ServiceAccount namespace/name (TokenRequest,
        signed by the apiserver's service-account key, so it survives restart()): the
        account's RBAC decides what it may do, as for a pod's mounted token."""
        token = self.kubectl("create", "token", name, "-n", namespace,
                             f"--duration={hours}h").stdout.strip()
        path = str(self.workdir / f"kubeconfig-sa-{namespace}-{name}")
        self._write_kubeconfig(path, f"system:serviceaccount:{namespace}:{name}", token)
        return path

    # -- clients -------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the apiserver's self-signed certificate (no verification
        before the cert dir is written, i.e. while waiting for readiness)."""
        ca = self.workdir / "certs" / "apiserver.crt"
        if not ca.exists():
            return ssl._create_unverified_context()
        return ssl.create_default_context(cafile=str(ca))

    def get(self, path: str, token: str | None = None, timeout: float = 10):
        """GET path with a bearer token (admin by default): (status, body)."""
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token or self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, kubeconfig: str | None = None
    ) -> subprocess.CompletedProcess:
        """Runs kubectl from PATH against this apiserver; raises on failure
        when check is true, with kubectl's stderr in the message."""
        cmd = [
            "kubectl",
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def bind_controller_user(self, gateway: bool = True) -> None:
        """Binds the controller kubeconfig's user (`portcullis-controller`) to the
        ClusterRole and Role of deploy/controller-rbac.yaml, which must be applied, and, unless
        not gateway (no Istio), to the Role of deploy/controller-gateway-rbac.yaml in
        istio-system (applied here; the namespace must exist)."""
        self.kubectl("apply", "-f", "-", input=CONTROLLER_BINDINGS)
        if gateway:
            self.kubectl("apply", "-f", str(REPO / "deploy" / "controller-gateway-rbac.yaml"))
            self.kubectl("apply", "-f", "-", input=GATEWAY_BINDING)

    def install_portcullis(self, *namespaces: str,
                           rbac: tuple[str, ...] = ("controller-rbac", "authd-rbac"),
                           istio: bool = True) -> None:
        """What the watching tests start from: Istio's CRDs (unless not istio), the namespaces,
        the ProtectedHost CRD (established), deploy/'s RBAC files named in rbac and the
        controller user's bindings."""
        if istio:
            self.install_istio_crds()
        for ns in namespaces:
            self.kubectl("create", "namespace", ns)
        self.kubectl("apply", "-f", str(REPO / "crds" / "protectedhost.yaml"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/protectedhosts.portcullis.io")
        self.kubectl("apply", *[a for f in rbac for a in ("-f", str(REPO / "deploy" / f"{f}.yaml"))])
        self.bind_controller_user(gateway=istio)

    def bind_revoker(self, ns: str) -> str:
        """A ServiceAccount revoker in ns bound to deploy/revoker-rbac.yaml's Role and
        ClusterRole (applied before), as README says to bind the people who revoke, and the
        empty list they may not create themselves. Returns the path of its kubeconfig."""
        self.kubectl("-n", ns, "create", "serviceaccount", "revoker")
        self.kubectl("apply", "-f", "-", input=f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: revoker, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: portcullis-revoker}}
subjects: [{{kind: ServiceAccount, name: revoker, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: revoker}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-revoker}}
subjects: [{{kind: ServiceAccount, name: revoker, namespace: {ns}}}]
""")
        self.kubectl("-n", ns, "create", "secret", "generic", "portcullis-revocations")
        return self.service_account_kubeconfig(ns, "revoker")

    def install_istio_crds(self, crds: str | None = None, timeout: str = "60s") -> None:
        """Applies the cached Istio CRDs and waits until they are established."""
        crds = crds or e2e_tools()["PORTCULLIS_ISTIO_CRDS"]
        # Server-side: the CRDs are too big for the last-applied annotation.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
        self.kubectl(
            "wait", "--for=condition=Established", f"--timeout={timeout}", "-f", crds
        )


@pytest.fixture(scope="module")
def api_server():
    """A started ApiServer shared by the tests of one module."""
    if skip_e2e():
        pytest.skip("PORTCULLIS_SKIP_E2E=1")
    with ApiServer() as api:
        yield api


@pytest.fixture(scope="session")
def istio_validate() -> str:
    """Path of the cached istio-validate binary."""
    if skip_e2e():
        pytest.skip("PORTCULLIS_SKIP_E2E=1")
    return e2e_tools()["PORTCULLIS_ISTIO_VALIDATE"]
