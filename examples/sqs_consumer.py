"""Consume an SQS queue into human loops: at-least-once delivery, exactly one loop per message.

Each message's body is one item as JSON, the fields of a manifest line:

    {"id": "claim-1", "input": {"text": "Is this claim complete?"}}     custom (or "input_content")
    {"id": "form-1", "document": "s3://scans/form-1.png"}               textract
    {"id": "img-1", "image": "s3://uploads/img-1.jpg"}                  rekognition

Every message goes through one `a2ibatch.Submitter`, and is deleted only after `submit`
returned its outcome, that is once the outcome is in the ledger.  SQS may deliver a message
twice, and a consumer killed with ``kill -9`` leaves its messages to come back after their
visibility timeout; either way the repeat is answered from the ledger (or joins the send in
flight, or is checked with the service under the same loop name), so no message ever gets a
second loop.  A body that is not an item is left on the queue: give the queue a redrive
policy so that such messages end in a dead-letter queue.

    python examples/sqs_consumer.py --queue-url URL --task custom \\
        --flow-definition-arn arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME \\
        --ledger consumer-ledger.jsonl [--sqs-endpoint-url URL] [--until-empty]

SIGTERM or Ctrl-C stops receiving, lets the messages in hand finish and closes the ledger.
Other settings come from ``A2IBATCH_*`` variables, as for ``a2ibatch submit``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aioboto3
import anyio
import orjson

from a2ibatch import A2IBatchError, Item, S3Ref, SubmitSettings, Submitter, TaskType, load_settings

log = logging.getLogger("sqs_consumer")

#: what the consumer holds at once (received, not yet deleted); the Submitter's in-flight
#: cap bounds the calls below that
IN_HAND = 100


def item_from_body(task: TaskType, body: str) -> Item | None:
    """The item a message body names, or None when the body is not one."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return None
    return item_from_fields(task, obj)


def item_from_fields(task: TaskType, obj: Mapping[str, Any]) -> Item | None:
    """An `Item` from a manifest line's fields (what the Submitter checks, it checks)."""
    item_id = str(obj["id"])
    if task is TaskType.CUSTOM:
        content = obj.get("input_content")
        if content is None and "input" in obj:
            content = orjson.dumps(obj["input"]).decode()
        return Item(id=item_id, input_content=content) if isinstance(content, str) else None
    uri = obj.get("document" if task is TaskType.TEXTRACT else "image")
    if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:]:
        return None
    bucket, key = uri[5:].split("/", 1)
    return Item(id=item_id, s3=S3Ref(bucket, key, obj.get("version")))


@dataclass
class Report:
    """What one run of the consumer did."""

    received: int = 0
    deleted: int = 0
    unusable: int = 0  # bodies that are not items, left for the dead-letter queue
    errors: int = 0  # submits that raised (left on the queue: they come back)


async def consume(
    submitter: Submitter,
    sqs: Any,
    queue_url: str,
    *,
    until_empty: bool = False,
    wait_seconds: int = 1,
    stop: anyio.Event | None = None,
) -> Report:
    """Receive, submit and delete until `stop` is set (or, with `until_empty`, until the
    queue has no message left, in flight or not)."""
    task = submitter.settings.task
    report = Report()
    in_hand = anyio.CapacityLimiter(IN_HAND)
    stop = stop or anyio.Event()

    async def handle(message: Mapping[str, Any], token: object) -> None:
        try:
            item = item_from_body(task, message.get("Body", ""))
            if item is None:
                report.unusable += 1
                log.warning("unusable message %s", message.get("MessageId"))
                return
            try:
                await submitter.submit(item)  # returns once the outcome is in the ledger
            except A2IBatchError as exc:
                report.errors += 1
                log.warning("not submitted (%s): the message comes back", exc.code)
                return
            try:
                await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            except Exception as exc:  # it comes back, and is answered from the ledger
                report.errors += 1
                log.warning("not deleted (%s)", type(exc).__name__)
                return
            report.deleted += 1
        finally:
            in_hand.release_on_behalf_of(token)

    async with anyio.create_task_group() as tg:
        while not stop.is_set():
            room = int(min(10, in_hand.available_tokens))
            if room == 0:
                await anyio.sleep(0.05)
                continue
            answer = await sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=room, WaitTimeSeconds=wait_seconds
            )
            messages = answer.get("Messages", [])
            report.received += len(messages)
            for message in messages:
                token = object()
                await in_hand.acquire_on_behalf_of(token)
                tg.start_soon(handle, message, token)
            idle = until_empty and not messages and not in_hand.borrowed_tokens
            if idle and await queue_is_empty(sqs, queue_url):
                break
    return report


async def queue_is_empty(sqs: Any, queue_url: str) -> bool:
    """No message waiting, none received and not yet deleted, none delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    answer = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return all(int(answer["Attributes"].get(name, 0)) == 0 for name in names)


async def run(
    settings: SubmitSettings, queue_url: str, sqs_endpoint_url: str | None, until_empty: bool
) -> Report:
    """One Submitter and one SQS client for the whole run; SIGTERM and SIGINT stop it."""
    session = aioboto3.Session()
    stop = anyio.Event()
    async with (
        Submitter(settings, session=session) as submitter,
        session.client("sqs", endpoint_url=sqs_endpoint_url) as sqs,
        anyio.create_task_group() as tg,
    ):

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop.set()
                    return

        tg.start_soon(on_signal)
        report = await consume(submitter, sqs, queue_url, until_empty=until_empty, stop=stop)
        tg.cancel_scope.cancel()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--task", choices=[t.value for t in TaskType], required=True)
    parser.add_argument("--flow-definition-arn", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--endpoint-url", help="the A2I, Textract and Rekognition endpoint")
    parser.add_argument("--sqs-endpoint-url", help="the SQS endpoint (default: AWS's)")
    parser.add_argument("--region")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--until-empty", action="store_true", help="stop once the queue is empty")
    parser.add_argument("--no-preflight", action="store_true", help="skip the flow checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    flags = {
        "task": args.task,
        "flow_definition_arn": args.flow_definition_arn,
        "ledger": args.ledger,
        "endpoint_url": args.endpoint_url,
        "region": args.region,
        "concurrency": args.concurrency,
        "preflight": not args.no_preflight,
    }
    try:
        settings = load_settings(flags)
        report = anyio.run(
            run, settings, args.queue_url, args.sqs_endpoint_url, args.until_empty,
            backend="asyncio",
        )  # fmt: skip
    except A2IBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(orjson.dumps(vars(report)).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
