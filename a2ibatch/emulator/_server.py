"""The HTTP server: one endpoint for every emulated service, in the caller's event loop.

aiohttp's low-level server (no router, no middleware, no access log) keeps the per-request
cost small; the protocol is recognised from the request itself: S3 by its signature
(`_s3.is_s3`), the others by `_wire.identify`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from . import _engine, _introspection, _s3, _wire
from ._auth import caller_from_header
from ._config import EmulatorConfig
from ._errors import ServiceError
from ._state import State

log = logging.getLogger(__name__)

#: how long a stopping server waits for calls in flight (a slow answer, say)
SHUTDOWN_TIMEOUT = 1.0
#: request bodies up to this size: 3 MiB of InputContent, JSON-escaped, fits with room
MAX_BODY = 32 * 1024 * 1024


class _Server(web.Server):
    """aiohttp's low-level server with a body limit above A2I's 3 MiB input limit."""

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, self._loop, client_max_size=MAX_BODY
        )


class Emulator:
    """A running emulator: its URL, and its state for callers in the same process."""

    def __init__(self, state: State, host: str, port: int) -> None:
        self._state = state
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The endpoint URL to give every AWS client (``http://HOST:PORT``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def config(self) -> EmulatorConfig:
        """The settings in force."""
        return self._state.config

    def reconfigure(self, **changes: Any) -> EmulatorConfig:
        """Change settings while running (as ``POST /_emulator/config`` does)."""
        config = self._state.config.updated(changes)
        self._state.reconfigure(config)
        return config

    def stats(self) -> dict[str, Any]:
        """The same figures as ``GET /_emulator/stats``."""
        return self._state.stats.snapshot(self._state.loops)

    def reset(self) -> None:
        """Forget every loop, counter, bucket and object."""
        self._state.reset()


def make_handler(state: State) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The request handler of the low-level aiohttp server, bound to `state`."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(_introspection.PREFIX):
            return await _introspection.handle(state, request)
        authorization = request.headers.get("Authorization")
        state.stats.count_agent(request.headers.get("User-Agent", ""))
        if _s3.is_s3(request, authorization):
            return await _s3.handle(state, request, authorization)
        protocol, operation = _wire.identify(request)
        try:
            if operation is None:
                raise _wire.unknown_operation(protocol)
            params = await _wire.parameters(request, protocol, operation)
            caller = caller_from_header(authorization, state.config.region)
            reply = await _engine.handle(state, operation, params, caller)
        except ServiceError as error:
            return _wire.failure(protocol, error)
        except Exception:
            log.exception("emulator failed on %s %s", request.method, request.path)
            return _wire.failure(protocol, _wire.internal_error(protocol))
        if reply.drop:
            _drop_connection(request)
        return _wire.success(protocol, reply.body)

    return handle


def _drop_connection(request: web.BaseRequest) -> None:
    """Close the socket so the answer written next goes nowhere (aiohttp ignores that)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


@asynccontextmanager
async def serve(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    """Run an emulator in the current event loop until the block ends."""
    config = config or EmulatorConfig()
    state = State(config)
    server = _Server(make_handler(state), access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            config.host,
            config.port,
            backlog=1024,
            reuse_address=True,
        )
        await site.start()
        host, port = runner.addresses[0][:2]
        yield Emulator(state, str(host), int(port))
    finally:
        await runner.cleanup()
        if state.s3.touched:  # moto's state is the worker thread's to change
            await asyncio.get_running_loop().run_in_executor(state.s3_executor(), state.s3.close)
