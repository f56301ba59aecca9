"""One item's send: the intent, the call through the caller, and what the answer means.

`ItemSender.send` turns an item and its loop name into an `Outcome`.  Exactly once: the
`intent` record reaches the ledger before the first call, every attempt uses the same name,
and a "name in use" answer (or an ambiguous one that retries could not settle) is reconciled
with DescribeHumanLoop instead of being reported as a failure.  A loop that exists is never
`failed`: the loop of another job is `name_taken` with its facts, and a loop nothing could
check is `unverified` (a rerun checks it first).  Used by a job's runner and by the
long-lived `Submitter`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._aws import Clients
from ._calls import Caller, CallFailed, Found
from ._counters import Counters
from ._errors import setting
from ._models import ErrorInfo, Invalid, Item, Outcome, Status
from ._retry import CallError, ErrorKind
from ._tasks import RequestOptions, TaskAdapter
from .ledger import LedgerWriter, iso_time, utc_timestamp

DESCRIBE_OPERATION = "DescribeHumanLoop"


class _Unverified(Exception):
    """DescribeHumanLoop could not tell whether a loop exists."""

    def __init__(self, name: str, error: CallError) -> None:
        super().__init__(f"could not check loop {name!r}: {error.code} {error.message}".rstrip())
        self.error = error


class ItemSender:
    """Sends items of one job (of one of its regions, in a job of several: `region`, which
    its ledger records then name): the adapter's request through the job's caller."""

    def __init__(
        self,
        *,
        adapter: TaskAdapter,
        clients: Clients,
        writer: LedgerWriter,
        caller: Caller,
        options: RequestOptions,
        region: str | None = None,
    ) -> None:
        self.adapter = adapter
        self.writer = writer
        self.caller = caller
        self.options = options
        self.region = region
        self.counters: Counters = caller.counters
        self._send = getattr(clients.by_service(adapter.service), adapter.method)
        self._a2i = clients.a2i

    async def send(self, item: Item, name: str, ambiguous: bool) -> Outcome:
        """The item's outcome; `ambiguous` says a call may already have reached the service."""
        try:
            result = await self._submit(item, name, ambiguous)
        except _Unverified as exc:
            info = ErrorInfo("Unverified", f"{exc}; a rerun checks again before sending")
            result = outcome(item, Status.UNVERIFIED, name, 0, error=info)
        if self.region is not None:
            result = dataclasses.replace(result, region=self.region)
        return result

    async def _submit(self, item: Item, name: str, ambiguous: bool) -> Outcome:
        adapter = self.adapter
        request = adapter.request(item, name, self.options)
        if not ambiguous:
            await self.writer.intent(item.id, item.line, name, self.region)
        check = self._check_before_resend(name) if adapter.describe_before_resend else None
        try:
            answer, attempts = await self.caller.attempt(
                adapter.operation,
                self._send,
                request,
                classify=adapter.classify,
                ambiguous=ambiguous,
                resend_check=check,
            )
        except CallFailed as failed:
            return await self._failed(item, name, failed)
        if type(answer) is Found:
            return self._reconciled(item, name, answer.value, answer.attempts)
        read = adapter.read_answer(answer)
        return outcome(
            item,
            read.status,
            name,
            attempts,
            arn=read.human_loop_arn,
            activation=read.activation,
            response=read.response,
        )

    def _check_before_resend(self, name: str) -> Callable[[], Awaitable[Any]]:
        """For built-in tasks, where a resend is paid twice: is the loop there already?"""

        async def check() -> Any:
            found = await self._describe(name)
            if found is None:
                # No loop: the item is sent (again); if an earlier attempt was analysed
                # without activating a loop, this one analyses it once more.
                self.counters.reanalysed += 1
            return found

        return check

    async def _failed(self, item: Item, name: str, failed: CallFailed) -> Outcome:
        error, attempts = failed.error, failed.attempts
        if error.kind is ErrorKind.NAME_IN_USE:
            return await self._name_in_use(item, name, attempts, failed.ambiguous, error)
        if error.kind is ErrorKind.ITEM:
            return outcome(item, Status.FAILED, name, attempts, error=error.info())
        if failed.ambiguous:
            found = await self._describe(name)
            if found is not None:
                return self._reconciled(item, name, found, attempts)
        info = ErrorInfo(
            error.code, f"gave up after {attempts} attempts: {error.message}".rstrip(": ")
        )
        return outcome(item, Status.FAILED, name, attempts, error=info)

    async def _name_in_use(
        self, item: Item, name: str, attempts: int, ambiguous: bool, error: CallError
    ) -> Outcome:
        found = await self._describe(name)
        # A generated name is a digest of the job and the item: whoever holds it sent this
        # very input under this flow definition, i.e. this job.  An explicit name is ours
        # only if one of our own calls for it may have gone through.
        ours = item.name is None or ambiguous
        if found is not None and ours:
            return self._reconciled(item, name, found, attempts)
        if found is None:
            facts: dict[str, Any] = {"status": "Deleted"}
            message = (
                f"loop name {name!r} is held by a loop the service no longer describes "
                f"(deleted: names stay taken): {error.message}".rstrip(": ")
            )
        else:
            facts = _facts(found)
            message = (
                f"loop name {name!r} is held by a loop this ledger has no record of starting "
                f"(created {facts.get('creation_time')}, {facts.get('status')}); if this job "
                "started it and lost the record, nothing more is needed; otherwise choose "
                "another name"
            )
        return outcome(
            item,
            Status.NAME_TAKEN,
            name,
            attempts,
            arn=None if found is None else found.get("HumanLoopArn"),
            error=ErrorInfo("NameInUse", message),
            loop=facts,
        )

    def _reconciled(
        self, item: Item, name: str, found: Mapping[str, Any], attempts: int
    ) -> Outcome:
        flow = self.options.flow_definition_arn
        if found.get("FlowDefinitionArn") not in (None, flow):
            info = ErrorInfo(
                "NameInUse",
                f"loop name {name!r} belongs to a loop of another flow definition; "
                f"for a review of its own, use a new {setting('name_prefix')}",
            )
            return outcome(
                item,
                Status.NAME_TAKEN,
                name,
                attempts,
                arn=found.get("HumanLoopArn"),
                error=info,
                loop=_facts(found),
            )
        self.counters.recovered += 1
        return outcome(
            item, Status.STARTED, name, attempts, arn=found.get("HumanLoopArn"), recovered=True
        )

    async def _describe(self, name: str) -> dict[str, Any] | None:
        """DescribeHumanLoop with retries; None when no such loop exists."""
        try:
            response = await self.caller.call(
                DESCRIBE_OPERATION, self._a2i.describe_human_loop, HumanLoopName=name
            )
        except CallFailed as exc:
            if exc.not_found:
                return None
            raise _Unverified(name, exc.error) from None
        return dict(response)


def _facts(found: Mapping[str, Any]) -> dict[str, Any]:
    """What DescribeHumanLoop said of a loop, as the ledger records it."""
    created = found.get("CreationTime")
    return {
        "creation_time": iso_time(created),
        "flow_definition_arn": found.get("FlowDefinitionArn"),
        "status": found.get("HumanLoopStatus"),
        "human_loop_arn": found.get("HumanLoopArn"),
    }


def outcome(
    item: Item,
    status: Status,
    name: str,
    attempts: int,
    *,
    arn: str | None = None,
    activation: Any = None,
    error: ErrorInfo | None = None,
    recovered: bool = False,
    response: dict[str, Any] | None = None,
    loop: Mapping[str, Any] | None = None,
) -> Outcome:
    return Outcome(
        id=item.id,
        line=item.line,
        status=status,
        loop_name=name,
        human_loop_arn=arn,
        activation=activation,
        attempts=attempts,
        error=error,
        recovered=recovered,
        at=utc_timestamp(),
        loop=loop,
        response=response,
    )


def invalid_outcome(entry: Invalid) -> Outcome:
    return Outcome(
        id=entry.id,
        line=entry.line,
        status=Status.INVALID,
        error=ErrorInfo("InvalidInput", entry.reason),
        at=utc_timestamp(),
    )
