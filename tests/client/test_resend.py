"""A safe request whose kept-alive connection the server dropped goes out once more; an unsafe one does not.

The server here answers the first request of each connection and closes the connection when the second arrives,
without an answer: what a client meets when a server's keep-alive timeout (uvicorn's 5 s) closes the connection as
its next request goes out.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from ganforge.client import AsyncGanforge, Ganforge, TransportError

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class DroppingServer:
    """A loopback HTTP/1.1 server that answers one request a connection and drops the connection at the next."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[str] = []  # request lines in the order they arrived; answered or not
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            for answer in (True, False):
                head = []
                while (line := reader.readline()) not in (b"\r\n", b""):
                    head.append(line.decode("latin-1").strip())
                if not head:
                    return
                length = next((int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:")), 0)
                reader.read(length)
                self.seen.append(head[0])
                if answer:
                    connection.sendall(ANSWER)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[DroppingServer]:
    dropping = DroppingServer()
    yield dropping
    dropping.close()


def test_a_get_on_a_dropped_connection_is_sent_again_on_a_new_one(server: DroppingServer) -> None:
    with Ganforge(server.url, "token") as client:
        assert client.request("GET", "/runs").json() == {}
        assert client.request("GET", "/runs/abc").json() == {}  # its first connection is dropped
    assert server.seen == ["GET /runs HTTP/1.1", "GET /runs/abc HTTP/1.1", "GET /runs/abc HTTP/1.1"]


def test_a_post_on_a_dropped_connection_is_an_error_and_goes_out_once(server: DroppingServer) -> None:
    with Ganforge(server.url, "token") as client:
        client.request("GET", "/runs")
        with pytest.raises(TransportError, match=r"POST .*/runs: Server disconnected"):
            client.request("POST", "/runs", json={"dataset": "ring8"})
    assert server.seen == ["GET /runs HTTP/1.1", "POST /runs HTTP/1.1"]


def test_the_async_client_sends_a_get_again_too(server: DroppingServer) -> None:
    async def two_gets() -> list[object]:
        async with AsyncGanforge(server.url, "token") as client:
            return [(await client.request("GET", path)).json() for path in ("/runs", "/runs/abc")]

    assert asyncio.run(two_gets()) == [{}, {}]
    assert server.seen == ["GET /runs HTTP/1.1", "GET /runs/abc HTTP/1.1", "GET /runs/abc HTTP/1.1"]
