"""A TCP proxy on 127.0.0.1 that breaks one connection mid-stream: a real network fault between a worker
and `lineage-guard serve` (the bytes are TLS; the proxy forwards them unread).

The first connection whose server-to-client bytes pass `cut_after` is broken; every other connection is
forwarded whole. Two faults:

- reset (default): both sides get an RST (SO_LINGER 0), as a killed peer gives; the client hears at once.
- `black_hole=True`: nothing more is forwarded either way and nothing is closed, as a pulled cable, a
  dropped NAT entry or a peer host powered off gives. TCP to the proxy stays up (its kernel acknowledges
  every byte), so only the client's own checks (HTTP/2 keepalive pings, its idle timeout) can notice.

`cut_now()` breaks every connection open now at its next byte (e.g. after the first call, before a
DoGet's first byte); later connections are forwarded whole. On exit every socket is closed, so the server's side of a black-holed stream ends too.

    with CuttingProxy(("127.0.0.1", 8815), cut_after=256 * 1024) as proxy:
        ...                       # clients dial proxy.port instead of 8815
        assert proxy.cuts == 1
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Self


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_after: int | None = None, *, black_hole: bool = False):
        self.upstream = upstream
        self.cut_after = cut_after
        self.black_hole = black_hole
        self.cuts = 0
        self.connections = 0
        self._states: list[dict] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _wake_and_close(sock)

    def cut_now(self) -> None:
        """Break every connection open now at its next byte, either way."""
        with self._lock:
            for state in self._states:
                state["cut_now"] = True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            state = {"down": 0, "dead": False, "cut_now": False}
            with self._lock:
                self._states.append(state)
            threading.Thread(target=self._pipe, args=(client, server, state, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, state, True), daemon=True).start()

    def _cut_here(self, state: dict, downstream: bool, size: int) -> int | None:
        """How many of these `size` bytes still pass when this connection is cut now, else None."""
        with self._lock:
            if state["dead"]:
                return 0
            if state["cut_now"]:
                self.cuts += 1
                state["dead"] = True
                return 0
            if downstream and self.cut_after is not None:
                state["down"] += size
                if self.cuts == 0 and state["down"] > self.cut_after:
                    self.cuts += 1
                    state["dead"] = True
                    return max(0, size - (state["down"] - self.cut_after))
        return None

    def _pipe(self, src: socket.socket, dst: socket.socket, state: dict, downstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                passing = self._cut_here(state, downstream, len(data))
                if passing is None:
                    dst.sendall(data)
                    continue
                if passing:
                    dst.sendall(data[:passing])
                if self.black_hole:
                    continue          # keep reading and dropping: the peer's TCP sees a healthy, silent link
                for sock in (src, dst):
                    _reset(sock)
                return
        except OSError:
            pass
        finally:
            if not (self.black_hole and state["dead"]):
                for sock in (src, dst):
                    _wake_and_close(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST, not a FIN: the peer sees a broken connection, not an orderly end.

    The other pipe thread is blocked in recv() on one of these sockets, and on Linux close() does not
    end a recv() another thread is in: the socket would stay open, no RST would go out, and the peer
    would wait for bytes that never come. shutdown(SHUT_RD) wakes that recv (it returns b"") and sends
    nothing; the socket's last release then sends the RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _wake_and_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
