"""A connection pool whose cost per request does not grow with its size: small pools side by side.

httpcore's pool, placing each request, walks every connection it holds and polls the socket of
each idle one, so the CPU one request costs grows with the pool. Measured on loopback against
the simulator (client process CPU per create, ``AsyncSession`` at full concurrency): 0.65 ms
with 4 connections, 0.84 ms with 8, 1.3 ms with 16, 2.2 ms with 32 and 2.8 ms with 64.

``ShardedTransport`` holds several pools of at most ``SHARD_SIZE`` connections and gives each
request to the pool with the fewest requests in flight, so a client with 32 connections pays
what one with 4 pays. A request counts as in flight until its response is closed (the body is
read after the transport returns), which keeps the shards balanced: with at most ``n`` requests
in flight overall (``AsyncSession`` bounds them), no request ever waits in a full shard while
another has a free connection.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

#: Most connections one httpcore pool holds.
SHARD_SIZE = 4


def pooled_transport(connections: int, **options: Any) -> httpx.AsyncBaseTransport:
    """An async transport keeping up to ``connections`` connections alive, sharded when that is many.

    ``options`` go to each ``httpx.AsyncHTTPTransport`` (``verify``, ...). The shards share one TLS
    context, built here once: each costs about 17 ms to build (it loads the CA bundle), which with
    eight shards was a sixth of a second of the daemon's start.
    """
    shards = math.ceil(connections / SHARD_SIZE)
    sizes = [connections // shards + (1 if index < connections % shards else 0) for index in range(shards)]
    if shards > 1:
        options = {**options, "verify": httpx.create_ssl_context(verify=options.get("verify", True))}
    pools = [
        httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                                 **options)
        for size in sizes
    ]
    return pools[0] if len(pools) == 1 else ShardedTransport(pools)


class ShardedTransport(httpx.AsyncBaseTransport):
    """Sends each request through the shard with the fewest requests in flight."""

    def __init__(self, shards: list[httpx.AsyncHTTPTransport]) -> None:
        self._shards = shards
        self._in_flight = [0] * len(shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        in_flight = self._in_flight
        shard = in_flight.index(min(in_flight))
        in_flight[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            in_flight[shard] -= 1
            raise

        def release() -> None:
            in_flight[shard] -= 1

        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, release)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its shard when it is closed (once)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
