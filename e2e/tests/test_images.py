"""The two images (issue 4, item 3), built as `make images` builds them: scripts/images.sh makes
debian:bookworm-slim with debootstrap and builds Dockerfile.authd and Dockerfile.controller with
buildah. Each image is then run with buildah (chroot isolation, no container engine): the
binaries start as uid 65532 from the exec-form entrypoint, `--version` and `--check-config` work,
and the runtime image holds the daemon's libraries but no compiler or headers.

A cold build (debootstrap + build dependencies) takes a few minutes; later runs reuse the cached
base and layers. Skipped with PORTCULLIS_SKIP_E2E=1 or PORTCULLIS_SKIP_IMAGES=1.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.kube import REPO  # noqa: E402
from harness.proc import free_port  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.environ.get("PORTCULLIS_SKIP_E2E") == "1" or os.environ.get("PORTCULLIS_SKIP_IMAGES") == "1",
    reason="PORTCULLIS_SKIP_E2E=1 or PORTCULLIS_SKIP_IMAGES=1",
)

TAG = os.environ.get("PORTCULLIS_IMAGE_TAG", "0.1.0")
DAEMONS = ["authd", "controller"]
ENV = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
BUILD_ONLY = {"gcc", "gcc-12", "cpp", "cpp-12", "g++", "binutils", "make", "cmake",
              "build-essential", "libc6-dev", "pkg-config", "libcurl4-openssl-dev",
              "libyaml-dev", "libjansson-dev", "libwebsockets-dev", "libjwt-dev", "libssl-dev",
              "libhiredis-dev", "zlib1g-dev", "libev-dev"}


def buildah(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def images():
    """Both images, built (or brought up to date) by scripts/images.sh."""
    subprocess.run([str(REPO / "scripts" / "images.sh")], check=True, cwd=REPO,
                   stdout=sys.stderr, timeout=3600)
    return {d: f"portcullis-{d}:{TAG}" for d in DAEMONS}


@pytest.fixture(scope="module")
def containers(images):
    """A working container of each image (buildah from), removed afterwards."""
    made = {}
    try:
        for d, image in images.items():
            made[d] = buildah("from", "--pull=never", image).stdout.strip().splitlines()[-1]
        yield made
    finally:
        for ctr in made.values():
            buildah("rm", ctr, check=False)


def run_in(ctr, *cmd, volumes=()) -> subprocess.CompletedProcess:
    vols = [a for v in volumes for a in ("-v", v)]
    return buildah("run", "--isolation", "chroot", *vols, ctr, "--", *cmd, check=False)


def image_config(image) -> dict:
    return json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]


def inspect_rootfs(ctr) -> tuple[set[str], list[str]]:
    """(installed Debian packages, compiler files present) of a container's root."""
    root = Path(buildah("mount", ctr).stdout.strip())
    try:
        status = (root / "var/lib/dpkg/status").read_text()
        tools = [str(p.relative_to(root)) for p in
                 [root / "usr/bin" / t for t in ("cc", "gcc", "c++", "ld", "as", "make")]
                 + list(root.glob("usr/lib/gcc/*/*/cc1")) if p.exists()]
    finally:
        buildah("umount", ctr, check=False)
    pkgs, name = set(), None
    for line in status.splitlines():
        if line.startswith("Package: "):
            name = line.split()[1]
        elif line.startswith("Status: ") and line.endswith(" installed") and name:
            pkgs.add(name)
    return pkgs, tools


@pytest.mark.parametrize("daemon", DAEMONS)
def test_image_runs_as_65532_with_exec_entrypoint(images, daemon):
    cfg = image_config(images[daemon])
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == [f"/usr/local/bin/portcullis-{daemon}"]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_version_inside_image(containers, daemon):
    proc = run_in(containers[daemon], f"/usr/local/bin/portcullis-{daemon}", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"portcullis-{daemon} {TAG}"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_process_uid_is_65532(containers, daemon):
    proc = run_in(containers[daemon], "id", "-u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "65532"


# --version starting at all proves every linked library is there; these are spot checks.
@pytest.mark.parametrize(
    "daemon, runtime",
    [("authd", {"libwebsockets17", "libcurl4", "libssl3", "libhiredis0.14", "ca-certificates",
                "libev4", "libwebsockets-evlib-ev"}),
     ("controller", {"libjansson4", "ca-certificates"})],
)
def test_runtime_image_has_libraries_but_no_toolchain(containers, daemon, runtime):
    pkgs, tools = inspect_rootfs(containers[daemon])
    assert not tools, f"compiler tools in the runtime image: {tools}"
    assert runtime <= pkgs, f"missing: {runtime - pkgs}"
    assert not pkgs & BUILD_ONLY, f"build-only packages: {pkgs & BUILD_ONLY}"


AUTHD_CONFIG = """\
listen: 0.0.0.0:4180
adminListen: 0.0.0.0:9090
cookieSecretFiles: [/cfg/cookie/secret]
hosts:
  - id: test-auth/echo
    hosts: [echo.example.com]
    oidc: {issuerURL: "https://idp.example.com/realms/main", clientID: echo, clientSecret: s3cret}
    access: {allowedGroups: [admins]}
"""


@pytest.fixture
def authd_config_dir(tmp_path):
    """A config directory readable by uid 65532 inside the container."""
    (tmp_path / "cookie").mkdir()
    (tmp_path / "cookie" / "secret").write_text("x" * 43)
    (tmp_path / "config.yaml").write_text(AUTHD_CONFIG)
    (tmp_path / "bad.yaml").write_text(AUTHD_CONFIG.replace("clientID: echo", "clientId: echo"))
    for p in (tmp_path, tmp_path / "cookie"):
        p.chmod(0o755)
    return tmp_path


def test_authd_check_config_inside_image(containers, authd_config_dir):
    ctr, vol = containers["authd"], f"{authd_config_dir}:/cfg:ro"
    ok = run_in(ctr, "/usr/local/bin/portcullis-authd", "--check-config", "--config",
                "/cfg/config.yaml", volumes=[vol])
    assert ok.returncode == 0, ok.stderr + ok.stdout
    bad = run_in(ctr, "/usr/local/bin/portcullis-authd", "--check-config", "--config",
                 "/cfg/bad.yaml", volumes=[vol])
    assert bad.returncode != 0
    assert "/cfg/bad.yaml:" in bad.stderr + bad.stdout


def test_authd_serves_on_epoll_inside_image(containers, authd_config_dir):
    """The image holds libwebsockets' libev plugin: authd starts on epoll, not poll()."""
    ports = [free_port(), free_port()]
    (authd_config_dir / "run.yaml").write_text(
        AUTHD_CONFIG.replace("0.0.0.0:4180", f"127.0.0.1:{ports[0]}")
                    .replace("0.0.0.0:9090", f"127.0.0.1:{ports[1]}"))
    proc = run_in(containers["authd"], "timeout", "-s", "TERM", "3",
                  "/usr/local/bin/portcullis-authd", "--config", "/cfg/run.yaml",
                  volumes=[f"{authd_config_dir}:/cfg:ro"])
    out = proc.stdout + proc.stderr
    assert "event=start version=" in out and "event_loop=epoll" in out, out
    assert "plugin could not be loaded" not in out, out


def test_controller_bootstrap_inside_image(containers):
    """The manifests embedded at image build time come out of the image's binary."""
    proc = run_in(containers["controller"], "/usr/local/bin/portcullis-controller", "bootstrap")
    assert proc.returncode == 0, proc.stderr
    for kind in ("Namespace", "CustomResourceDefinition", "Deployment", "Secret"):
        assert f"kind: {kind}\n" in proc.stdout
    assert f"image: portcullis-authd:{TAG}" in proc.stdout


def test_controller_render_check_inside_image(containers, tmp_path):
    """`render` validates a ProtectedHost without a cluster (the controller's config check)."""
    good = (REPO / "examples" / "echoserver.yaml").read_text()
    (tmp_path / "ph.yaml").write_text(good)
    tmp_path.chmod(0o755)
    (tmp_path / "ph.yaml").chmod(0o644)
    proc = run_in(containers["controller"], "/usr/local/bin/portcullis-controller", "render",
                  "-f", "/in/ph.yaml", volumes=[f"{tmp_path}:/in:ro"])
    assert proc.returncode == 0, proc.stderr
    assert "AuthorizationPolicy" in proc.stdout


@pytest.mark.parametrize("daemon", DAEMONS)
def test_image_size_is_slim(images, daemon):
    """The runtime stage is the base plus a few libraries (about 98 MB here), not the build
    stage (about 690 MB)."""
    text = json.loads(buildah("images", "--json", images[daemon]).stdout)[0]["size"]
    number, unit = text.split()  # e.g. "98.3 MB", decimal units
    size = float(number) * {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
    assert size < 150e6, f"{images[daemon]} is {text}"
