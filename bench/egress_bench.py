"""Issue 9's benchmark: HTTP GET of a 1 MiB file through the egress proxy vs directly from a sandbox
on a plain bridge, in the same run.

A threaded HTTP server (a process of its own) on the gateway of a plain bridge network the bench
creates serves 1 MiB from memory. Corral's allowlist sandbox (gVisor, runtime corral-runsc-net) is also attached to that
bridge, so one client process in it can fetch the file both ways: directly over the plain bridge,
and through the egress proxy (plain HTTP; and a CONNECT tunnel, for information). Python's
http.client makes a new connection per request and times each request inside the sandbox (no
docker exec or MCP time is counted); the paths alternate request by request, so load on this shared
machine weighs on all of them alike.
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp import Client

from bench.corral_bench import BenchError, Ctx, call
from bench.report import LATENCY_HEADERS, Check, Results
from bench.stats import Summary, ms
from corral.config import NetworkSettings, Settings
from corral.server import build_server

MIB = 1 << 20
NAME = "bench.test"
STREAMS = 4  # fetchers at once in the throughput bursts

# Runs inside the sandbox: n rounds of one GET of /mib per path, each on a new connection; prints
# the times in ms per path.
CLIENT = r"""
import base64, http.client, json, os, sys, time
from urllib.parse import urlsplit
host, name, port, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
proxy = urlsplit(os.environ["HTTP_PROXY"])
auth = {"Proxy-Authorization": "Basic " + base64.b64encode(
    ("%s:%s" % (proxy.username, proxy.password)).encode()).decode()}
def fetch(mode):
    if mode == "direct":
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/mib")
    elif mode == "proxy":
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=60)
        conn.request("GET", "http://%s:%d/mib" % (name, port), headers=auth)
    else:
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=60)
        conn.set_tunnel(name, port, headers=auth)
        conn.request("GET", "/mib")
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    if reply.status != 200 or len(body) != 1 << 20:
        raise SystemExit("%s: bad reply %d, %d bytes: %r" % (mode, reply.status, len(body), body[:200]))
modes = ("direct", "proxy", "tunnel")
for _ in range(warm):
    for mode in modes:
        fetch(mode)
times = {mode: [] for mode in modes}
for _ in range(n):
    for mode in modes:
        t0 = time.perf_counter()
        fetch(mode)
        times[mode].append((time.perf_counter() - t0) * 1000)
# Throughput: `streams` fetchers at once, each fetching `n // 2` files; wall time per path.
import threading
def burst(mode, streams, each):
    workers = [threading.Thread(target=lambda: [fetch(mode) for _ in range(each)]) for _ in range(streams)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - t0) * 1000
streams = int(sys.argv[6])
walls = {mode: [] for mode in ("direct", "proxy")}
for mode in ("direct", "proxy") * 2:
    walls[mode].append(burst(mode, streams, max(n // 4, 1)))
print(json.dumps({"times": times, "walls": walls, "files": streams * max(n // 4, 1)}))
"""


# The test server runs in a process of its own, as a real one would: in the bench's process its
# threads would compete for the GIL with the proxy's relay threads, a cost no real server imposes.
SERVER = r"""
import http.server, os, sys
payload = os.urandom(1 << 20)
class Mib(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 0), Mib)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


async def egress_phase(ctx: Ctx, home: Path) -> None:
    res, cfg = ctx.results, ctx.cfg
    batches, per_batch = (3, 10) if cfg.quick else (10, 30)
    network = await anyio.to_thread.run_sync(
        lambda: ctx.docker.networks.create(
            f"corral-bench-egress-{secrets.token_hex(3)}", driver="bridge", labels=dict(ctx.bench_labels)
        )
    )
    server: subprocess.Popen[str] | None = None
    box: Any = None
    try:
        await anyio.to_thread.run_sync(network.reload)
        gateway = str(network.attrs["IPAM"]["Config"][0]["Gateway"])
        argv = [sys.executable, "-c", SERVER, gateway]
        server = await anyio.to_thread.run_sync(lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        assert server.stdout is not None
        port = int(await anyio.to_thread.run_sync(server.stdout.readline))
        settings = Settings(
            home=home,
            network=NetworkSettings(hosts=((NAME, gateway),), allow_private=(f"{gateway}:{port}",)),
        )
        async with Client(build_server(settings), raise_exceptions=False) as client:
            sandbox = (await call(client, "create_sandbox", network="allowlist", allow=[NAME]))["id"]
            box = await anyio.to_thread.run_sync(ctx.docker.containers.get, f"corral-{sandbox}")
            # The same sandbox on a plain bridge too: its direct path to the server.
            await anyio.to_thread.run_sync(lambda: network.connect(box))
            await anyio.to_thread.run_sync(lambda: _put_client(box))
            samples: dict[str, list[float]] = {}
            rates: dict[str, list[float]] = {}  # MiB/s of each burst
            for batch in range(batches):
                warm = 3 if batch == 0 else 1
                found = await anyio.to_thread.run_sync(_run_client, box, gateway, port, per_batch, warm)
                for mode, times in found["times"].items():
                    samples.setdefault(mode, []).extend(times)
                for mode, walls in found["walls"].items():
                    rates.setdefault(mode, []).extend(found["files"] / (wall / 1000) for wall in walls)
            _report(res, samples, rates)
            await anyio.to_thread.run_sync(lambda: network.disconnect(box, force=True))
            box = None
            await call(client, "delete_sandbox", sandbox=sandbox)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if box is not None:
            await anyio.to_thread.run_sync(lambda: network.disconnect(box, force=True))
        await anyio.to_thread.run_sync(network.remove)


def _put_client(container: Any) -> None:
    # Through an exec, not put_archive: gVisor does not see files copied into a running container.
    script = "import sys; open('/tmp/egress_client.py', 'w').write(sys.argv[1])"
    code, out = container.exec_run(["python3", "-c", script, CLIENT], user="1000:1000")
    if code != 0:
        raise BenchError(f"could not write the client into {container.name}: {out.decode()[-300:]}")


def _run_client(container: Any, host: str, port: int, n: int, warm: int) -> dict[str, Any]:
    argv = ["python3", "/tmp/egress_client.py", host, NAME, str(port), str(n), str(warm), str(STREAMS)]
    code, out = container.exec_run(argv, user="1000:1000", demux=True)
    stdout, stderr = out
    if code != 0:
        raise BenchError(f"the client failed ({code}): {(stderr or stdout or b'').decode()[-500:]}")
    return dict(json.loads(stdout))


def _report(res: Results, samples: dict[str, list[float]], rates: dict[str, list[float]]) -> None:
    table = res.table(
        "egress",
        "HTTP GET of 1 MiB: through the egress proxy vs direct from a plain bridge",
        ["path", *LATENCY_HEADERS, "MiB/s"],
        about=(
            "Each request is a new connection from Corral's allowlist sandbox (gVisor, runsc-net, uid 1000) "
            "to a threaded HTTP server on the host serving 1 MiB from memory, timed inside the sandbox. "
            "**direct**: over a plain bridge the sandbox is also attached to; **proxy**: plain HTTP through "
            "the egress proxy (credential, name and address checks, kernel relay); **tunnel**: through a "
            "CONNECT tunnel, how HTTPS goes (one more round trip by protocol). The three alternate request "
            "by request in one client process; MiB/s here is one request at a time (1 / mean). "
            f"**throughput** rows: {STREAMS} fetchers at once, MiB/s of each burst, direct and proxy "
            "bursts alternating."
        ),
    )
    summaries = {}
    for mode, times in samples.items():
        s = Summary.of(times)
        summaries[mode] = s
        res.summaries[f"egress.{mode}"] = s
        table.add_latency(mode, s, f"{1000 / s.mean:.0f}")
    for mode, per_burst in rates.items():
        table.add(f"throughput, {mode}", str(len(per_burst)), "", "", "", "", "", f"{statistics.median(per_burst):.0f}")
    direct, proxy = summaries["direct"], summaries["proxy"]
    sequential = 1 - direct.mean / proxy.mean
    parallel = 1 - statistics.median(rates["proxy"]) / statistics.median(rates["direct"])
    extra = proxy.p50 - direct.p50
    res.extra["egress.throughput_overhead"] = parallel
    res.extra["egress.sequential_overhead"] = sequential
    res.extra["egress.p50_extra_ms"] = extra
    res.extra["egress.direct_mibps"] = statistics.median(rates["direct"])
    res.extra["egress.proxy_mibps"] = statistics.median(rates["proxy"])
    table.note(
        f"proxy vs direct: throughput with {STREAMS} fetchers {parallel * 100:.1f} % lower; one request at a "
        f"time {sequential * 100:.1f} % lower; p50 per request +{ms(extra)} ms "
        f"(tunnel +{ms(summaries['tunnel'].p50 - direct.p50)} ms)"
    )


def egress_checks(res: Results) -> list[Check]:
    if "egress.throughput_overhead" not in res.extra:
        return []
    x = res.extra
    direct, proxy = res.summaries["egress.direct"], res.summaries["egress.proxy"]
    return [
        Check(
            f"1 MiB GETs through the egress proxy vs direct, throughput ({STREAMS} at once)",
            "≤ 20 % overhead",
            f"{x['egress.throughput_overhead'] * 100:.1f} % ({x['egress.proxy_mibps']:.0f} vs "
            f"{x['egress.direct_mibps']:.0f} MiB/s); one at a time: {x['egress.sequential_overhead'] * 100:.1f} %",
            x["egress.throughput_overhead"] <= 0.20,
        ),
        Check(
            "1 MiB GET through the egress proxy vs direct, p50 per request",
            "≤ 2 ms more",
            f"+{ms(x['egress.p50_extra_ms'])} ms ({ms(proxy.p50)} ms vs {ms(direct.p50)} ms)",
            x["egress.p50_extra_ms"] <= 2.0,
        ),
    ]


__all__ = ["egress_checks", "egress_phase"]
