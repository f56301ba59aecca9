"""S3 on the emulator's one endpoint: requests signed for ``s3`` are answered by moto.

A request is S3 when its SigV4 signature (or a presigned URL's ``X-Amz-Credential``) names
the service ``s3``, or when it is signed the older way only S3 still takes (SigV2: an
``Authorization: AWS KEY:SIGNATURE`` header, or a URL presigned with ``AWSAccessKeyId``
and ``Signature``); everything else stays on the emulator's own path.  The request is
turned into the AWS request it stands for, ``https://s3.REGION.amazonaws.com/BUCKET/KEY``
(path style: the endpoint is an IP address or ``localhost``) or
``https://BUCKET.s3.REGION.amazonaws.com/KEY`` (virtual-host style: a ``Host`` of
``BUCKET.localhost`` or ``BUCKET.<--host>``), REGION being the signature's, and handed to
`_moto.S3Store` in its worker thread; the answer comes back as moto wrote it.

Before each S3 request the loops whose time has come are completed and the output.json of
every loop completed since the last S3 request is written (`_outputs`), so an S3 read of
a loop that DescribeHumanLoop shows Completed always finds its output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final
from xml.sax.saxutils import escape

from aiohttp import web

from . import _outputs
from ._auth import S3_SCOPE_END, region_of_scope
from ._moto import MotoMissing
from ._state import State

log = logging.getLogger(__name__)

NOT_SERVED: Final = "S3 is turned off on this emulator (--no-s3)."
#: request headers moto must not see as sent (the body is already de-chunked, the host
#: is the AWS host the request stands for)
_DROPPED: Final = frozenset({"host", "transfer-encoding", "expect", "connection"})
#: answer headers aiohttp writes itself
_OWN: Final = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


def is_s3(request: web.BaseRequest, authorization: str | None) -> bool:
    """Whether a request was signed for S3 (by header, or as a presigned URL)."""
    if authorization is not None:
        return S3_SCOPE_END in authorization or authorization.startswith("AWS ")
    query = request.query
    credential = query.get("X-Amz-Credential")
    if credential is not None:
        return credential.endswith(S3_SCOPE_END)
    return "AWSAccessKeyId" in query and "Signature" in query


def _region(request: web.BaseRequest, authorization: str | None, default: str) -> str:
    if authorization is not None:
        start = authorization.find("Credential=")
        end = authorization.find(",", start)
        scope = authorization[start + 11 : end if end >= 0 else None] if start >= 0 else ""
        return region_of_scope(scope.strip(), default)
    return region_of_scope(request.query.get("X-Amz-Credential"), default)


def aws_host(host_header: str, region: str, own_host: str) -> str:
    """The AWS host name a request's ``Host`` stands for (see the module docstring)."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if name.endswith(".amazonaws.com"):
        return name
    for suffix in (".localhost", "." + own_host):
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{name[: -len(suffix)]}.s3.{region}.amazonaws.com"
    return f"s3.{region}.amazonaws.com"


def error(status: int, code: str, message: str) -> web.Response:
    """An S3 error answer (XML), as botocore's S3 parser reads it."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        "<RequestId>emulator</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


async def handle(
    state: State, request: web.BaseRequest, authorization: str | None
) -> web.StreamResponse:
    """Answer one S3 request with moto, after writing the outputs of completed loops."""
    config = state.config
    state.stats.s3_requests += 1
    if not config.s3:
        return error(501, "NotImplemented", NOT_SERVED)
    if request.headers.get("Expect", "").lower() == "100-continue":
        # No router here to do it: without it the client waits for this before the body.
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await request.read()
    region = _region(request, authorization, config.region)
    host = aws_host(request.headers.get("Host", ""), region, config.host)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
    headers["Host"] = host
    url = f"https://{host}{request.raw_path}"
    now = time.time()
    state.loops.tick(now)
    completed = state.loops.take_completed()
    store, seed = state.s3, config.seed

    def work() -> tuple[int, dict[str, str], bytes]:
        if completed:
            store.put_objects(_outputs.objects(completed, seed))
        return store.dispatch(request.method, url, headers, body)

    try:
        status, answer_headers, content = await asyncio.get_running_loop().run_in_executor(
            state.s3_executor(), work
        )
    except MotoMissing as exc:
        return error(501, "NotImplemented", str(exc))
    except Exception:
        log.exception("the emulator's S3 failed on %s %s", request.method, request.path)
        return error(500, "InternalError", "We encountered an internal error. Please try again.")
    length = answer_headers.get("content-length") or answer_headers.get("Content-Length")
    response = web.Response(
        status=status,
        body=content,
        headers={k: v for k, v in answer_headers.items() if k.lower() not in _OWN},
    )
    if request.method == "HEAD" and length is not None:
        response.headers["Content-Length"] = length
    return response
