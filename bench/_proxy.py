"""A loopback TCP proxy that delays every chunk by a fixed time in each direction, as a
real network's round trips would, and counts the client's turns (round trips).

Run as a separate process so that it does not share the benchmarked client's GIL:

    python bench/_proxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS

It prints ``ready`` once listening, then one JSON line per closed connection:
``{"turns": N, "up_bytes": N, "down_bytes": N}``. A *turn* is the client writing again
after the server has written: with one command per round trip (smtplib) that is one per
command; with PIPELINING it is one per pipelined group.

Delays are pipelined, not serialised: a chunk read at time t leaves at t + delay however
many chunks are in flight, like latency on a link (not a bandwidth limit).
"""

from __future__ import annotations

import asyncio
import json
import sys

LOOPBACK = "127.0.0.1"


class _Stats:
    def __init__(self) -> None:
        self.turns = 0
        self.up_bytes = 0
        self.down_bytes = 0
        self.last = "down"  # the server speaks first (greeting)


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    stats: _Stats,
    direction: str,
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while True:
            data = await reader.read(256 * 1024)
            if direction == "up":
                stats.up_bytes += len(data)
                if data and stats.last == "down":
                    stats.turns += 1
            else:
                stats.down_bytes += len(data)
            if data:
                stats.last = direction
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
    except ConnectionError:
        queue.put_nowait((loop.time(), b""))
    try:
        await sender
    except ConnectionError:
        pass


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target_port: int,
    delay: float,
) -> None:
    stats = _Stats()
    server_reader, server_writer = await asyncio.open_connection(LOOPBACK, target_port)
    try:
        await asyncio.gather(
            _pump(client_reader, server_writer, delay, stats, "up"),
            _pump(server_reader, client_writer, delay, stats, "down"),
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()
        print(
            json.dumps(
                {"turns": stats.turns, "up_bytes": stats.up_bytes, "down_bytes": stats.down_bytes}
            ),
            flush=True,
        )


async def serve(listen_port: int, target_port: int, delay: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, target_port, delay), LOOPBACK, listen_port
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, target, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    try:
        asyncio.run(serve(listen, target, seconds))
    except KeyboardInterrupt:
        pass
