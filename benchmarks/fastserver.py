"""A minimal HTTP/1.1 keep-alive server answering every request with a sendSavedMMS success.

It is deliberately cheap (a raw asyncio.Protocol), so that the *client* is the bottleneck when
comparing clients. Run it as a separate process: ``python benchmarks/fastserver.py PORT``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys

_COUNTER = itertools.count(1)


def _reply() -> bytes:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<RESPONSE><STATUS>Success</STATUS>'
        b"<MMSID>35674</MMSID><TRACKINGID>MMS_%d</TRACKINGID><TO>16501234123</TO>"
        b"<STATUSDETAILS>MMS request accepted and queued for delivery</STATUSDETAILS></RESPONSE>"
    ) % next(_COUNTER)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(_reply())


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:port until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=1024)
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # client on CPU 0, server on CPU 1 (perf-notes method)
    asyncio.run(serve(int(sys.argv[1])))
