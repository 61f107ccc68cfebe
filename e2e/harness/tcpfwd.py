"""A TCP forwarder: `python3 -m e2e.harness.tcpfwd LISTEN_HOST LISTEN_PORT TO_HOST TO_PORT`
copies bytes both ways between each accepted connection and a new one to TO_HOST:TO_PORT,
until either side closes. Plumbing between network namespaces (the kube-apiserver listens on
this namespace's 127.0.0.1, which a pod's network namespace cannot reach): started and stopped
by pid through proc.Proc, it keeps no state and runs until it is stopped."""

from __future__ import annotations

import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(conn: socket.socket, target: tuple[str, int]) -> None:
    try:
        up = socket.create_connection(target, timeout=10)
    except OSError:
        conn.close()
        return
    up.settimeout(None)
    t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
    t.start()
    _pipe(conn, up)
    t.join()
    conn.close()
    up.close()


def main(argv: list[str]) -> None:
    listen_host, listen_port, to_host, to_port = argv
    srv = socket.create_server((listen_host, int(listen_port)), reuse_port=False)
    print(f"forwarding {listen_host}:{listen_port} to {to_host}:{to_port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve, args=(conn, (to_host, int(to_port))), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
