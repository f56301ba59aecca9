"""The three wire protocols: which operation a request is, and how answers are written.

* rest-json (A2I runtime): the operation is the method and path (``/human-loops...``);
  errors carry the code in the ``x-amzn-ErrorType`` header and a JSON ``Message``.
* JSON 1.1 (Textract, Rekognition, SageMaker): ``X-Amz-Target: Prefix.Operation`` and a
  JSON body; errors are status 4xx/5xx with ``{"__type": code, "Message": ...}``.
* Smithy RPC v2 CBOR (Textract's newer protocol): ``POST /service/Textract/operation/Op``
  with ``smithy-protocol: rpc-v2-cbor`` and CBOR bodies (needs the optional ``cbor2``).

botocore reads the error code from the header or ``__type`` and the message from
``message`` or ``Message``, so these answers satisfy its parsers exactly.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from ._engine import OPERATIONS, TARGET_PREFIXES, Operation
from ._errors import A2I, DIALECTS, TEXTRACT, ServiceError

REST_PREFIX: Final = "/human-loops"
CBOR_PREFIX: Final = "/service/"
JSON_11: Final = "application/x-amz-json-1.1"
CBOR_TYPE: Final = "application/cbor"

_NAME_IN_PATH: Final = frozenset({"DescribeHumanLoop", "DeleteHumanLoop"})

_request_ids = itertools.count(1)


class Protocol(enum.Enum):
    REST_JSON = "rest-json"
    JSON_11 = "json"
    RPC_V2_CBOR = "rpc-v2-cbor"


def _request_id() -> str:
    return f"00000000-0000-4000-a000-{next(_request_ids):012x}"


def identify(request: web.BaseRequest) -> tuple[Protocol, Operation | None]:
    """The protocol of an AWS request and its operation (None: no such operation)."""
    target = request.headers.get("X-Amz-Target")
    if target is not None:
        prefix, _, name = target.partition(".")
        return Protocol.JSON_11, _json_operation(prefix, name)
    path = request.path
    if path.startswith(CBOR_PREFIX) and request.headers.get("smithy-protocol") == "rpc-v2-cbor":
        # /service/{ServiceName}/operation/{OperationName}
        parts = path.split("/")
        if len(parts) == 5 and parts[3] == "operation":
            return Protocol.RPC_V2_CBOR, _json_operation(parts[2], parts[4])
        return Protocol.RPC_V2_CBOR, None
    return Protocol.REST_JSON, _rest_operation(request.method, path)


def _json_operation(prefix: str, name: str) -> Operation | None:
    service = TARGET_PREFIXES.get(prefix)
    operation = OPERATIONS.get(name)
    if operation is None or operation.dialect.service != service:
        return None
    return operation


def _rest_operation(method: str, path: str) -> Operation | None:
    if path == REST_PREFIX:
        name = {"POST": "StartHumanLoop", "GET": "ListHumanLoops"}.get(method)
    elif path == REST_PREFIX + "/stop" and method == "POST":
        name = "StopHumanLoop"
    elif path.startswith(REST_PREFIX + "/") and path.count("/") == 2:
        name = {"GET": "DescribeHumanLoop", "DELETE": "DeleteHumanLoop"}.get(method)
    else:
        name = None
    return OPERATIONS.get(name) if name else None


async def parameters(
    request: web.BaseRequest, protocol: Protocol, operation: Operation
) -> dict[str, Any]:
    """The request's parameters: body members, plus path and query members for rest-json."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ServiceError(
            "RequestEntityTooLargeException", "The request is too large.", 413
        ) from None
    params: Any
    try:
        if protocol is Protocol.RPC_V2_CBOR:
            params = _cbor().loads(raw) if raw else {}
        else:
            params = orjson.loads(raw) if raw else {}
    except Exception:
        raise ServiceError("SerializationException", "The request body is not valid.") from None
    if not isinstance(params, dict):
        raise ServiceError("SerializationException", "The request body must be an object.")
    if protocol is Protocol.REST_JSON:
        if request.query:
            params.update(request.query)
        if operation.name in _NAME_IN_PATH:
            params["HumanLoopName"] = request.path.rsplit("/", 1)[1]
    return params


def success(protocol: Protocol, body: Mapping[str, Any]) -> web.Response:
    """A 200 answer."""
    if protocol is Protocol.RPC_V2_CBOR:
        return web.Response(
            body=_cbor().dumps(dict(body)),
            headers={
                "Content-Type": CBOR_TYPE,
                "smithy-protocol": "rpc-v2-cbor",
                "x-amzn-RequestId": _request_id(),
            },
        )
    content_type = "application/json" if protocol is Protocol.REST_JSON else JSON_11
    return web.Response(
        body=orjson.dumps(body),
        headers={"Content-Type": content_type, "x-amzn-RequestId": _request_id()},
    )


def failure(protocol: Protocol, error: ServiceError) -> web.Response:
    """An error answer in the protocol's format."""
    request_id = _request_id()
    if protocol is Protocol.REST_JSON:
        return web.Response(
            status=error.status,
            body=orjson.dumps({"Message": error.message, **error.fields}),
            headers={
                "Content-Type": "application/json",
                "x-amzn-ErrorType": error.code,
                "x-amzn-RequestId": request_id,
            },
        )
    if protocol is Protocol.RPC_V2_CBOR:
        return web.Response(
            status=error.status,
            body=_cbor().dumps({"__type": error.code, "message": error.message, **error.fields}),
            headers={
                "Content-Type": CBOR_TYPE,
                "smithy-protocol": "rpc-v2-cbor",
                "x-amzn-RequestId": request_id,
            },
        )
    return web.Response(
        status=error.status,
        body=orjson.dumps({"__type": error.code, "Message": error.message, **error.fields}),
        headers={"Content-Type": JSON_11, "x-amzn-RequestId": request_id},
    )


def unknown_operation(protocol: Protocol) -> ServiceError:
    """The error for a request that names no emulated operation."""
    if protocol is Protocol.REST_JSON:
        return ServiceError("UnknownOperationException", "No such operation.", 404)
    return ServiceError("UnknownOperationException", "No such operation.", 400)


def dialect_of(protocol: Protocol) -> str:
    """The service whose error codes a protocol-level failure uses."""
    return A2I if protocol is Protocol.REST_JSON else TEXTRACT


def internal_error(protocol: Protocol) -> ServiceError:
    return DIALECTS[dialect_of(protocol)].server_fault()


def _cbor() -> Any:
    """cbor2, imported on first use: only the RPC v2 CBOR protocol needs it."""
    try:
        import cbor2
    except ImportError:  # pragma: no cover - depends on the environment
        raise ServiceError(
            "UnsupportedMediaType", "rpc-v2-cbor needs the cbor2 package on the server", 415
        ) from None
    return cbor2
