"""The egress relay's worker threads: whatever a pump's job does, the threads counted as idle are
there to take the next job (a stranded job is a connection that hangs forever)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import anyio

from corral.service.network.pump import Relay, Workers

WAIT = 10.0


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_failing_job_leaves_its_thread_for_the_next_job() -> None:
    workers = Workers()
    ran = threading.Event()

    def fails() -> None:
        raise RuntimeError("boom")

    workers.submit(fails)
    wait_until(lambda: workers.idle == 1, "the failed job's thread to be idle")
    workers.submit(ran.set)
    assert ran.wait(WAIT), "the job after a failed one never ran"


def test_a_relay_that_outlives_its_event_loop_leaves_its_thread_for_the_next_relay() -> None:
    workers = Workers()
    src_peer, src = socket.socketpair()
    dst, dst_peer = socket.socketpair()

    async def start() -> None:
        Relay([(src, dst)], workers).start()

    asyncio.run(start())  # the loop is closed while its relay still runs, as at a server's shutdown
    src_peer.close()  # the relay ends and has no loop to tell
    assert dst_peer.recv(16) == b""
    wait_until(lambda: workers.idle == 1, "the relay's thread to be idle")

    client, upstream_in = socket.socketpair()
    upstream_out, reader = socket.socketpair()

    async def relay_once() -> None:
        relay = Relay([(upstream_in, upstream_out)], workers)
        relay.start()
        client.sendall(b"answer")
        client.shutdown(socket.SHUT_WR)
        with anyio.fail_after(WAIT):
            await relay.wait()

    asyncio.run(relay_once())
    assert reader.recv(16) == b"answer"
    for sock in (src, dst, dst_peer, client, reader):
        sock.close()
