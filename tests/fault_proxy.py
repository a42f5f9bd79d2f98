"""A TCP proxy on 127.0.0.1 that kills one connection mid-stream: a real network fault between a worker
and `lineage-guard serve` (the bytes are TLS; the proxy forwards them unread).

The first connection whose server-to-client bytes pass `cut_after` is reset (SO_LINGER 0: an RST,
as a dropped link or a killed peer gives) on both sides; every other connection is forwarded whole.

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
    def __init__(self, upstream: tuple[str, int], cut_after: int):
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
            state = {"down": 0, "dead": False}
            threading.Thread(target=self._pipe, args=(client, server, state, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, state, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, state: dict, downstream: bool) -> None:
        try:
            while not state["dead"]:
                data = src.recv(65536)
                if not data:
                    break
                if downstream:
                    state["down"] += len(data)
                    with self._lock:
                        cut = self.cuts == 0 and state["down"] > self.cut_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        dst.sendall(data[: max(0, len(data) - (state["down"] - self.cut_after))])
                        state["dead"] = True
                        for sock in (src, dst):
                            _reset(sock)
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass


def _reset(sock: socket.socket) -> None:
    """Close with an RST, not a FIN: the peer sees a broken connection, not an orderly end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
