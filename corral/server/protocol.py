"""uvicorn's HTTP/1.1 protocol with the limits it lacks: a bound on open connections and a time
limit on receiving each request (slowloris: uvicorn waits for a request's headers forever).

A connection must deliver a request's headers within `header_timeout` seconds (from connect, or
from the end of the previous response on a kept-alive connection) and the rest of its body within
`body_timeout` more; otherwise it is closed. A connection beyond `max_connections` is answered
503 and closed at once. Once a request is received the app has all the time it needs (long
tool calls and SSE streams are not affected).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"retry-after: 5\r\ncontent-length: 37\r\n\r\ntoo many connections; try again soon\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 120.0


class GuardedH11Protocol(H11Protocol):
    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.logger.warning("refusing a connection: %d are open (the limit)", self.limits.max_connections)
            transport.write(BUSY)
            transport.close()
            return
        self._arm(self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:
            return  # still waiting for the whole header block: the deadline keeps running
        if state is h11.SEND_BODY:
            if not self._receiving_body:
                self._receiving_body = True
                self._arm(self.limits.body_timeout)
            return
        self._disarm()  # the request is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on a kept-alive connection (unless a pipelined one is already in).
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if self.conn.their_state is h11.IDLE:
            self._receiving_body = False
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that did not send its request in time")
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""
    return type("CorralH11Protocol", (GuardedH11Protocol,), {"limits": limits})
