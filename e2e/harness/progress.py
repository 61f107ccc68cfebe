"""Long waits say they are alive: the Python side of scripts/lib/progress.sh (standard library).

    with Progress("keycloak: waiting for /realms/demo", quiet=5):
        ...

While the block runs, reports the label, the time elapsed and what probe() returns (a short
text, or None): on a terminal (the stream is a TTY) one line updated every second and cleared at
the end; elsewhere one line every $PORTCULLIS_PROGRESS_INTERVAL seconds (30). Nothing is shown
for the first `quiet` seconds, so quick waits stay silent. PORTCULLIS_PROGRESS=tty or lines
forces the mode, as for the shell helper.
"""
from __future__ import annotations

import os
import sys
import threading
import time


def elapsed(seconds: float) -> str:
    """42s, 3m05s, 1h02m (as progress_elapsed in scripts/lib/progress.sh)."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    def __init__(self, label: str, probe=None, *, stream=None, quiet: float = 0.0,
                 interval: float | None = None):
        self.label, self.probe, self.quiet = label, probe, quiet
        self.stream = stream or sys.stderr
        mode = os.environ.get("PORTCULLIS_PROGRESS", "")
        self.tty = mode == "tty" or (mode != "lines" and self._isatty())
        self.interval = interval or float(os.environ.get("PORTCULLIS_PROGRESS_INTERVAL", "30"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _text(self, now: float, still: str = "") -> str:
        extra = None
        if self.probe:
            try:
                extra = self.probe()
            except Exception:  # noqa: BLE001 - a probe never breaks the wait it reports on
                extra = None
        return f"{self.label}: {still}{elapsed(now)}" + (f", {extra}" if extra else "")

    def _run(self, start: float) -> None:
        next_line = max(self.quiet, self.interval)
        while not self._stop.wait(1.0):
            now = time.monotonic() - start
            if now < self.quiet:
                continue
            if self.tty:
                self.stream.write("\r\033[K" + self._text(now))
                self._drawn = True
            elif now >= next_line:
                self.stream.write(self._text(now, "still running, ") + "\n")
                next_line += self.interval
            else:
                continue
            self.stream.flush()

    def __enter__(self) -> "Progress":
        self._thread = threading.Thread(target=self._run, args=(time.monotonic(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
