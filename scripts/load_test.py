"""A bounded load test of a running `python -m pipeline.serve` (it stops by itself).

    python scripts/load_test.py http://127.0.0.1:8080 [--requests 500] [--concurrency 32] [--json]

First ``--sequential`` requests one at a time (the baseline), then ``--requests`` requests with
``--concurrency`` in flight, each one test2016 sentence (greedy unless ``--decode beam``).
Prints failed requests, p50/p99 latency and sentences/s of both, and the ratio of the two
throughputs (issue #33: 0 failed, and at least 3x under concurrency, thanks to the server's
dynamic batching); with ``--json`` the figures also as one JSON line at the end.  Run it on the
machine that serves, with nothing else busy, and quote the CPU beside its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import socket
import statistics
import time
import urllib.parse
from pathlib import Path

TEST_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k" / "raw" / "test_2016_flickr.de.gz"
FALLBACK = ["Ein Hund läuft durch den Schnee .", "Zwei Männer spielen Fußball auf einer Wiese ."]


def sentences() -> list[str]:
    if TEST_SRC.is_file():
        with gzip.open(TEST_SRC, "rt", encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return FALLBACK


class Connection:
    """One keep-alive HTTP/1.1 connection that sends each request in a single write.

    Why not httpx: it writes the headers and the body separately, and the second write waits for
    the server's delayed ACK of the first (Nagle), adding ~40 ms to every request on Linux; that
    would be measured here as server latency."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def phase(url: str, texts: list[str], concurrency: int, decode: str) -> dict:
    """``texts`` as one request each, ``concurrency`` connections each sending its next when answered."""
    todo = list(reversed(texts))
    latencies: list[float] = []
    server_ms: list[float] = []
    failed = 0

    async def client() -> None:
        nonlocal failed
        conn = Connection(url)
        try:
            while todo:
                text = todo.pop()
                t0 = time.perf_counter()
                try:
                    status, answer = await asyncio.wait_for(
                        conn.post("/translate", {"text": text, "decode": decode}), 60
                    )
                    ok = status == 200 and len(answer["translations"]) == 1
                except (OSError, ValueError, KeyError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                    ok, answer = False, {}
                    await conn.close()
                    conn = Connection(url)
                latencies.append(1000 * (time.perf_counter() - t0))
                failed += not ok
                if ok:
                    server_ms.append(answer["ms"])
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(texts),
        "failed": failed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "server_p50_ms": statistics.median(server_ms) if server_ms else None,
        "sentences_per_s": len(texts) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sequential", type=int, default=40)
    ap.add_argument("--decode", default="greedy", choices=["greedy", "beam"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pool = sentences()
    texts = [pool[i % len(pool)] for i in range(args.requests)]
    asyncio.run(phase(args.url, pool[:8], 1, args.decode))  # warm-up
    alone = asyncio.run(phase(args.url, pool[: args.sequential], 1, args.decode))
    loaded = asyncio.run(phase(args.url, texts, args.concurrency, args.decode))
    speedup = loaded["sentences_per_s"] / alone["sentences_per_s"]
    for name, f in (("one at a time", alone), (f"concurrency {args.concurrency}", loaded)):
        print(
            f"{name:>16}: {f['requests']} requests, {f['failed']} failed, p50 {f['p50_ms']:.1f} ms, "
            f"p99 {f['p99_ms']:.1f} ms (the server's own time: p50 {f['server_p50_ms'] or 0:.1f} ms), "
            f"{f['sentences_per_s']:.1f} sentences/s"
        )
    print(f"throughput under concurrency: x{speedup:.2f} one at a time")
    if args.json:
        print(json.dumps({**loaded, "sequential": alone, "speedup_vs_sequential": speedup}))


if __name__ == "__main__":
    main()
