"""A small aiohttp web service that starts a human loop per document, exactly once.

    POST /documents   {"id": "doc-1", "content": {...}}     -> {"id", "status", "loop_name",
                                                                "human_loop_arn", "error"}
    GET  /health                                            -> the Submitter's stats

One `a2ibatch.Submitter` serves every request: the same document id posted twice, or by two
clients at once, gets one loop, and both answers name it.  `content` is any JSON (a custom
task's input); for a textract or rekognition task, post ``{"id": ..., "document":
"s3://bucket/key"}`` (or ``"image"``) instead.  An answer is 200 with the outcome (its
status may be ``failed`` or ``invalid``: those are answers too), 400 for a body that is not
a document, 503 while the service cannot send (an outage, a full loop quota).

    python examples/web_service.py --task custom --port 8080 \\
        --flow-definition-arn arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME \\
        --ledger service-ledger.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from a2ibatch import A2IBatchError, Item, S3Ref, SubmitSettings, Submitter, TaskType, load_settings

SUBMITTER = web.AppKey("submitter", Submitter)


def item_from(task: TaskType, body: Any) -> Item | None:
    """The document a request body names, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return None
    if task is TaskType.CUSTOM:
        if "content" not in body:
            return None
        return Item(id=body["id"], input_content=orjson.dumps(body["content"]).decode())
    uri = body.get("document" if task is TaskType.TEXTRACT else "image")
    if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:]:
        return None
    bucket, key = uri[5:].split("/", 1)
    return Item(id=body["id"], s3=S3Ref(bucket, key))


async def post_document(request: web.Request) -> web.Response:
    submitter = request.app[SUBMITTER]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    item = item_from(submitter.settings.task, body)
    if item is None:
        return json_response({"error": "the body must be a JSON document with id and content"}, 400)
    try:
        outcome = await submitter.submit(item)
    except A2IBatchError as exc:  # every item would fail now (an outage): try again later
        return json_response({"error": exc.code or "unavailable"}, 503)
    return json_response(
        {
            "id": outcome.id,
            "status": outcome.status.value,
            "loop_name": outcome.loop_name,
            "human_loop_arn": outcome.human_loop_arn,
            "error": None if outcome.error is None else outcome.error.code,
        }
    )


async def health(request: web.Request) -> web.Response:
    return json_response(request.app[SUBMITTER].stats().as_dict())


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def make_app(settings: SubmitSettings, *, session: Any | None = None) -> web.Application:
    """The application: its Submitter opens at start-up and closes (draining) at clean-up."""
    app = web.Application()

    async def submitter_context(app: web.Application) -> AsyncIterator[None]:
        async with Submitter(settings, session=session) as submitter:
            app[SUBMITTER] = submitter
            yield

    app.cleanup_ctx.append(submitter_context)
    app.router.add_post("/documents", post_document)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--task", choices=[t.value for t in TaskType], required=True)
    parser.add_argument("--flow-definition-arn", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    flags = {
        "task": args.task,
        "flow_definition_arn": args.flow_definition_arn,
        "ledger": args.ledger,
        "endpoint_url": args.endpoint_url,
    }
    try:
        settings = load_settings(flags)
    except A2IBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    web.run_app(make_app(settings), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
