"""Processes, ports, work dirs and waits shared by the e2e harness, the e2e tests and bench/
(standard library only).

Every child runs in its own session (process group) with its output in a log file, and is
stopped by its pid: SIGTERM to its group, a bounded wait, then SIGKILL and another bounded
wait (`stop_process`, `Proc.stop`). Every wait here has a deadline.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .progress import Progress

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("PORTCULLIS_WORK", REPO / "e2e" / ".work"))


def skip_e2e() -> bool:
    """True when the environment asks to skip tests that start real peers."""
    return os.environ.get("PORTCULLIS_SKIP_E2E") == "1"


def daemon_path(env: str, rel: str) -> Path:
    """A binary of the build tree: $env when set, else build/<rel>."""
    return Path(os.environ.get(env) or REPO / "build" / rel)


AUTHD = daemon_path("PORTCULLIS_AUTHD", "authd/portcullis-authd")
CONTROLLER = daemon_path("PORTCULLIS_CONTROLLER", "controller/portcullis-controller")


def built(path: Path, env: str) -> str:
    """path as a string; fails (naming env) when it is not an executable file."""
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not built: run `make` first (or set {env})")
    return str(path)


_given: set[int] = set()
_given_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that was free a moment ago (bind to 0, read it, close), never one
    this process was handed before, so ports picked together before anything binds differ."""
    with _given_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _given:
                _given.add(port)
                return port
    raise OSError("no fresh free port after 100 tries")


def work_dir(name: str) -> Path:
    """A fresh dir under e2e/.work (git-ignored; $PORTCULLIS_WORK); falls back to the system
    tmp."""
    try:
        WORK.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"portcullis-{name}-"))


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands 3xx answers back to the caller instead of following them."""

    def redirect_request(self, *a, **k):
        return None


def http(method: str, url: str, *, headers: dict | None = None, data: bytes | dict | None = None,
         timeout: float = 10, follow: bool = False, opener=None):
    """Tiny HTTP client: returns (status, headers-as-email.Message, body bytes); never raises
    on HTTP status; does not follow redirects unless follow=True. A dict as data is sent as a
    form. opener: a urllib opener of the caller's (e.g. with a cookie jar) instead."""
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if opener is None:
        opener = urllib.request.build_opener(*([] if follow else [NoRedirect()]))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _signal(pid: int, sig: int) -> None:
    """sig to pid's process group (a child started in its own session leads one), or to pid
    alone when it leads none."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0,
                 sig: int = signal.SIGTERM) -> int | None:
    """Stops a child by its pid: sig (and SIGCONT) to its process group, a wait of up to
    timeout, then SIGKILL and up to 10 s more. Returns its exit status (None when there was
    no child)."""
    if proc is None:
        return None
    if proc.poll() is None:
        _signal(proc.pid, sig)
        _signal(proc.pid, signal.SIGCONT)  # a stopped child (SIGSTOP in a test) acts on sig now
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def process_snapshot(pid: int) -> str:
    """What a live process is doing, from /proc: its state, CPU time and context switches, and
    per thread the state and the kernel function it sleeps in; then, where gdb is installed,
    every thread's native stack (bounded at 20 s). For a peer that stops answering."""
    out = []
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        out += [l for l in status.splitlines()
                if l.split(":")[0] in ("State", "Threads", "VmRSS", "SigBlk", "SigPnd", "ShdPnd",
                                       "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")]
        tick = os.sysconf("SC_CLK_TCK")
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            base = f"/proc/{pid}/task/{tid}"
            try:
                stat = Path(f"{base}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                cpu = (int(fields[11]) + int(fields[12])) / tick
                out.append(f"thread {tid} {Path(f'{base}/comm').read_text().strip()}: "
                           f"state {fields[0]}, cpu {cpu:.2f}s, "
                           f"wchan {Path(f'{base}/wchan').read_text().strip() or '-'}")
            except OSError as e:
                out.append(f"thread {tid}: {e}")
    except OSError as e:
        return f"(no /proc/{pid}: {e})"
    gdb = shutil.which("gdb")
    if gdb:
        try:
            r = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt 30"],
                               capture_output=True, text=True, timeout=20)
            out.append(r.stdout[-12000:])
        except (subprocess.TimeoutExpired, OSError) as e:
            out.append(f"(gdb: {e})")
    return "\n".join(out)


class PeerError(RuntimeError):
    """A peer did not come up or did not do what was asked; the message says why (for a
    process, with the end of its log)."""


class PeerTimeout(PeerError):
    """A child that was still running when its wait ran out (it has been stopped)."""


class Proc:
    """A child process with a log file.  start() → wait_http()/wait_port() → stop().
    The child gets its own process group, so stop() also ends what it forked (kc.sh → java)."""

    def __init__(self, name: str, argv: list, *, cwd=None, env: dict | None = None,
                 log_path: Path | None = None, report_signal: int | None = None):
        self.name, self.argv, self.cwd = name, [str(a) for a in argv], cwd
        self.report_signal = report_signal  # asks the child to write its own stacks (node)
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else work_dir(name) / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after = None   # seconds from start() to ready

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def returncode(self):
        return self.popen.returncode if self.popen else None

    def start(self) -> "Proc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def snapshot(self, why: str) -> None:
        """Appends what the live child is doing to its log: process_snapshot, then (with
        report_signal) the child's own report, which it writes to its log's directory."""
        if not self.alive():
            return
        text = process_snapshot(self.pid)
        with open(self.log_path, "a") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {why}: the process as it is\n{text}\n")
        if self.report_signal:
            before = set(self.log_path.parent.glob("report.*.json"))
            _signal(self.pid, self.report_signal)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and set(self.log_path.parent.glob("report.*.json")) == before:
                time.sleep(0.2)
            with open(self.log_path, "a") as log:
                for r in set(self.log_path.parent.glob("report.*.json")) - before:
                    log.write(f"=== its report: {r}\n{r.read_text(errors='replace')[:20000]}\n")

    def fail(self, msg: str, error=PeerError):
        text = f"{self.name}: {msg}\n--- last lines of {self.log_path} ---\n{self.tail()}"
        print(text, file=sys.stderr)
        raise error(text)

    def wait(self, probe, what: str, timeout: float, interval: float = 0.1):
        """Until probe() is true (OSError counts as not yet); stops the child and raises
        PeerError when it exits or timeout passes first. A wait past 5 s says it is alive
        (progress.Progress)."""
        with Progress(f"{self.name}: waiting for {what}", lambda: f"at most {timeout:.0f}s",
                      quiet=5):
            return self._wait(probe, what, timeout, interval)

    def _wait(self, probe, what: str, timeout: float, interval: float):
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                self.fail(f"exited with {self.returncode if self.popen else '?'} while waiting for {what}")
            try:
                if probe():
                    self.ready_after = time.monotonic() - self.started_at
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.snapshot(f"not ready after {timeout:.0f}s")
                self.stop()
                self.fail(f"not ready after {timeout:.0f}s waiting for {what}", PeerTimeout)
            time.sleep(interval)

    def wait_http(self, url: str, timeout: float = 30, ok=lambda status: status < 500):
        def probe():
            status, _, _ = http("GET", url, timeout=2)
            return ok(status)
        return self.wait(probe, url, timeout)

    def wait_port(self, port: int, host: str = "127.0.0.1", timeout: float = 30):
        def probe():
            with socket.create_connection((host, port), timeout=1):
                return True
        return self.wait(probe, f"tcp {host}:{port}", timeout)

    def stop(self, timeout: float = 10, sig=signal.SIGTERM) -> int | None:
        return stop_process(self.popen, timeout, sig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for(what: str, probe, timeout: float = 60, interval: float = 0.2, ignore=()):
    """Polls probe() until it returns something truthy and returns that; exceptions of the
    types in ignore count as not yet. Raises TimeoutError naming what (and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = probe()
        except ignore as e:  # noqa: PERF203
            last = e
        if last and not isinstance(last, BaseException):
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def metric_value(text: str, name_and_labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, None when absent."""
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line[len(name_and_labels):].split()[0])
    return None
