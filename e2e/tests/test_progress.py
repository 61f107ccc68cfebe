"""Long steps say they are alive (issue 11, item 5): scripts/lib/progress.sh, used by
build-e2e-tools.sh and fetch-peers.sh, and e2e/harness/progress.py, used by every wait of the
harness (Proc.wait: Keycloak, kube-apiserver, etcd, ...).

The commands under test end only once the progress line they wait for has been written (bounded
polls), so nothing here depends on how fast the machine is.
"""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.proc import REPO, Proc, PeerError  # noqa: E402
from e2e.harness.progress import Progress, elapsed  # noqa: E402

LIB = REPO / "scripts" / "lib" / "progress.sh"

# A command that ends (status $2) once file $1 contains "$3", polling for at most 20 s.
WAIT_FOR_LINE = 'for i in $(seq 200); do grep -q "$3" "$1" && exit "$2"; sleep 0.1; done; exit 99'


def run_lib(tmp_path, mode, script_args, status=0, want="packages"):
    err = tmp_path / "stderr"
    script = (f'. {LIB}; printf "a\\nb\\nc\\n" > {tmp_path}/v.log; '
              f'progress_run "build-e2e-tools: helm: building" "progress_lines {tmp_path}/v.log 9" '
              f'bash -c \'{WAIT_FOR_LINE}\' _ {err} {status} "{want}"')
    env = {**os.environ, "PORTCULLIS_PROGRESS": mode, "PORTCULLIS_PROGRESS_INTERVAL": "1"}
    with open(err, "w") as f:
        proc = subprocess.run(["bash", "-c", script, *script_args], stderr=f, env=env,
                              timeout=60)
    return proc.returncode, err.read_bytes().decode()


def test_lines_mode_reports_elapsed_and_packages(tmp_path):
    rc, err = run_lib(tmp_path, "lines", [])
    assert rc == 0
    first = err.splitlines()[0]
    assert first.startswith("build-e2e-tools: helm: building: still running, ")
    assert first.endswith("s, 3/9 packages")
    assert "\r" not in err


def test_tty_mode_updates_one_line_and_clears_it(tmp_path):
    rc, err = run_lib(tmp_path, "tty", [], want="3/9 packages")
    assert rc == 0
    assert err.startswith("\r\033[Kbuild-e2e-tools: helm: building: ")
    assert "3/9 packages" in err and "\n" not in err
    assert err.endswith("\r\033[K")


def test_the_command_status_is_kept(tmp_path):
    rc, _ = run_lib(tmp_path, "lines", [], status=3)
    assert rc == 3


def test_probes_and_formats(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 3_500_000)
    out = subprocess.run(
        ["bash", "-c", f'. {LIB}; progress_bytes {tmp_path} 1000000 downloaded; echo; '
                       f'progress_lines {tmp_path}/none; echo; '
                       'for s in 42 185 3725; do progress_elapsed $s; echo; done'],
        capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert out[0].endswith(" MB downloaded") and out[0].startswith("2.5")
    assert out[1] == "0 packages"
    assert out[2:] == ["42s", "3m05s", "1h02m"]
    assert [elapsed(s) for s in (42, 185, 3725)] == out[2:]


class Tty(io.StringIO):
    def isatty(self):
        return True


def wait_until(pred, what):
    for _ in range(200):
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


@pytest.mark.parametrize("tty", [True, False])
def test_python_progress(tty, monkeypatch):
    monkeypatch.delenv("PORTCULLIS_PROGRESS", raising=False)
    stream = Tty() if tty else io.StringIO()
    with Progress("keycloak: waiting for /realms/demo", lambda: "at most 300s", stream=stream,
                  interval=1):
        wait_until(lambda: "at most 300s" in stream.getvalue(), "a progress line")
    text = stream.getvalue()
    if tty:
        assert text.startswith("\r\033[Kkeycloak: waiting for /realms/demo: ")
        assert text.endswith("\r\033[K") and "\n" not in text
    else:
        line = text.splitlines()[0]
        assert line.startswith("keycloak: waiting for /realms/demo: still running, ")
        assert line.endswith("s, at most 300s")


def test_quiet_waits_print_nothing():
    stream = Tty()
    with Progress("x", stream=stream, quiet=60):
        pass
    assert stream.getvalue() == ""


def test_proc_wait_reports_while_waiting(tmp_path, capfd, monkeypatch):
    """Proc.wait (every peer's readiness wait) says it is alive once it has waited 5 s."""
    monkeypatch.setenv("PORTCULLIS_PROGRESS", "lines")
    monkeypatch.setenv("PORTCULLIS_PROGRESS_INTERVAL", "1")
    seen = []

    def probe():
        seen.append(capfd.readouterr().err)
        return any("still running" in s for s in seen)

    with Proc("sleeper", ["sleep", "60"], log_path=tmp_path / "sleeper.log").start() as p:
        p.wait(probe, "the progress line", timeout=30, interval=0.2)
    text = "".join(seen)
    assert "sleeper: waiting for the progress line: still running, " in text
    assert "at most 30s" in text


def test_proc_wait_still_fails_on_timeout(tmp_path):
    with Proc("sleeper", ["sleep", "60"], log_path=tmp_path / "sleeper.log").start() as p:
        with pytest.raises(PeerError, match="not ready after"):
            p.wait(lambda: False, "never", timeout=0.5)
