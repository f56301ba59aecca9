"""``/_emulator/...``: what tests and benchmarks ask the emulator itself.

No AWS client sends these paths.  GET stats, loops, accepted (per-second histogram),
quotas (every token bucket in use) and config; POST config (a partial JSON object of
settings) and reset (every loop, counter, bucket and object).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from ._state import State

PREFIX: Final = "/_emulator/"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )


async def _stats(state: State, request: web.BaseRequest) -> web.Response:
    state.loops.tick(time.time())
    return _json(state.stats.snapshot(state.loops))


async def _loops(state: State, request: web.BaseRequest) -> web.Response:
    now = time.time()
    state.loops.tick(now)
    return _json([loop.introspect() for loop in state.loops.every(now)])


async def _accepted(state: State, request: web.BaseRequest) -> web.Response:
    return _json(state.stats.histogram())


async def _quotas(state: State, request: web.BaseRequest) -> web.Response:
    return _json(state.quotas.snapshot())


async def _get_config(state: State, request: web.BaseRequest) -> web.Response:
    return _json(state.config.to_dict())


async def _set_config(state: State, request: web.BaseRequest) -> web.Response:
    try:
        changes = orjson.loads(await request.read() or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object of settings")
        config = state.config.updated(changes)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        return _json({"error": str(exc)}, 400)
    state.reconfigure(config)
    return _json(config.to_dict())


async def _reset(state: State, request: web.BaseRequest) -> web.Response:
    state.reset()
    return _json({"reset": True})


Route = Callable[[State, web.BaseRequest], Awaitable[web.Response]]
ROUTES: Final[dict[tuple[str, str], Route]] = {
    ("GET", "stats"): _stats,
    ("GET", "loops"): _loops,
    ("GET", "accepted"): _accepted,
    ("GET", "quotas"): _quotas,
    ("GET", "config"): _get_config,
    ("POST", "config"): _set_config,
    ("POST", "reset"): _reset,
}


async def handle(state: State, request: web.BaseRequest) -> web.Response:
    """Answer one ``/_emulator/...`` request."""
    route = ROUTES.get((request.method, request.path[len(PREFIX) :].rstrip("/")))
    if route is None:
        known = sorted(f"{method} {PREFIX}{name}" for method, name in ROUTES)
        return _json({"error": "no such endpoint", "endpoints": known}, 404)
    return await route(state, request)
