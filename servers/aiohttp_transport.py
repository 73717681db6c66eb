"""An httpx transport backed by aiohttp, so the async app can swap its HTTP engine by a setting.

httpx's own async pool spends most of a core on bookkeeping above about 20 concurrent requests
(see shared/MEASURED.md); this keeps the handlers' code identical while the bytes travel over
aiohttp's connector.
"""

from collections.abc import AsyncIterator

import aiohttp
import httpx


def _map_error(exc: BaseException, request: httpx.Request) -> httpx.HTTPError:
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(f"aiohttp: {exc!r}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(f"aiohttp: {exc!r}", request=request)
    return httpx.RemoteProtocolError(f"aiohttp: {exc!r}", request=request)


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one `aiohttp.ClientSession`; create it inside the event loop."""

    def __init__(self, max_connections: int) -> None:
        # httpx decodes content-encoding itself, so aiohttp must hand over the raw bytes.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            auto_decompress=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; aiohttp failures surface as the matching httpx exceptions."""
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=[(k.decode(), v.decode()) for k, v in request.headers.raw],
                data=await request.aread(),
                timeout=timeout,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc, request) from exc
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_AiohttpStream(response, request),
            request=request,
        )

    async def aclose(self) -> None:
        await self._session.close()
