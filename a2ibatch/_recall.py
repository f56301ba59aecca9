"""What a Submitter answers without a call: the items it knows, and its own figures.

`Recall` holds what is known of ids: the ledger index (an `IdTable`, 19 to 38 bytes an id),
kept current as outcomes are decided so that an id decided earlier in the same process is
answered as a restart would answer it, plus a small cache of recent outcomes kept whole.
It decides an item through the job's plan rule (`Planner.decide`) and rebuilds an answer
from the ledger where the plan skips the item: the index keeps states, not ARNs, so the
ARN is made from the deterministic loop name and the flow definition's partition, region
and account (``arn:aws:sagemaker:REGION:ACCOUNT:human-loop/NAME``).

`SubmitterStats` is the Submitter's figures for a health endpoint; `instrument` reports the
same as OpenTelemetry observable instruments (the ``otel`` extra, imported only there).
"""

from __future__ import annotations

import importlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from ._counters import Counters
from ._errors import ConfigError, setting
from ._models import (
    MAX_INPUT_CONTENT_CHARS,
    ErrorInfo,
    Invalid,
    Item,
    Outcome,
    S3Ref,
    Status,
    TaskType,
)
from ._plan import Planner, Resend, Skip, job_planner
from ._settings import SubmitSettings
from ._tasks import TaskAdapter
from .ledger import LedgerIndex
from .manifest import MAX_ID_CHARS

if TYPE_CHECKING:
    from ._submitter import Submitter

#: outcomes of recent sends kept whole (ARN, activation, error) for repeats of their ids
DEFAULT_RECENT: Final = 1024
#: per skip: the counter it counts in, and the status it answers (None: the ledger's)
_SKIPPED: Final = {
    Skip.DONE: ("skipped", None),
    Skip.FAILED: ("skipped_failed", Status.FAILED),
    Skip.NAME_TAKEN: ("skipped_name_taken", Status.NAME_TAKEN),
}


class Recall:
    """The ids a Submitter knows: the ledger's index and recent outcomes, kept current."""

    def __init__(
        self, settings: SubmitSettings, adapter: TaskAdapter, index: LedgerIndex, recent: int
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.index = index
        self._size = max(0, recent)
        self._recent: OrderedDict[str, Outcome] = OrderedDict()
        self._planner: Planner | None = None
        self._arn_prefix = arn_prefix(settings.flow_definition_arns[0])

    def decide(self, item: Item, counters: Counters) -> Outcome | Invalid | tuple[str, bool]:
        """An answer without a call (counted as a skip), an invalid item, or (loop name,
        whether a call may already have reached the service) to send."""
        problem = _problem(self.adapter, item)
        if problem is not None:
            return Invalid(item.line, problem, item.id)
        planner = self._planner
        if planner is None or item.name is not None:
            # A job's planner reads the ledger only if it had ids when built, and remembers
            # explicit names to refuse repeats within one manifest, which a service asking
            # again for the same item must not trip over: such items get a planner each.
            planner = job_planner(self.settings, self.index, unique=False)
            if item.name is None and len(self.index):
                self._planner = planner
        decision = planner.decide(item)
        if type(decision) is str or type(decision) is Resend:
            return str(decision), type(decision) is Resend
        if isinstance(decision, Invalid):
            return decision
        assert isinstance(decision, Skip)
        counter, status = _SKIPPED.get(decision, ("skipped", None))
        setattr(counters, counter, getattr(counters, counter) + 1)
        state = self.index.state(item.id)
        known = self._recent.get(item.id)
        if known is not None and known.status is state:
            return known
        status = status or state or Status.STARTED
        name = item.name or planner.namer.generated(item.id, self.adapter.payload_key(item))
        arn = self._arn_prefix + name if status is Status.STARTED else None
        error = None
        if not status.done:
            reason = f"the ledger has this item as {status.value}; retry_failed=True sends it"
            error = ErrorInfo("SkippedEarlier", reason)
        return Outcome(item.id, item.line, status, name, arn, error=error)

    def note(self, outcome: Outcome) -> None:
        """Put a decided outcome into the index as the ledger's reader would on the next
        start, and (whole: ARN, activation, error) into the recent outcomes."""
        assert outcome.id is not None
        self.index.note_outcome(outcome.id, outcome.status)
        if outcome.status is Status.INVALID:
            return
        if self._size:
            recent = self._recent
            recent[outcome.id] = outcome
            recent.move_to_end(outcome.id)
            if len(recent) > self._size:
                recent.popitem(last=False)

    def pending(self, item_id: str) -> None:
        """A send ended without an outcome: its intent is pending, as on the next start."""
        self.index.note_pending(item_id)
        self._recent.pop(item_id, None)

    @property
    def recent(self) -> int:
        return len(self._recent)


def arn_prefix(flow_definition_arn: str) -> str:
    """``arn:PARTITION:sagemaker:REGION:ACCOUNT:human-loop/``: a loop lives in its flow
    definition's partition, region and account."""
    parts = flow_definition_arn.split(":", 5)
    if len(parts) != 6 or not all(parts[1:5]):
        raise ConfigError(
            f"{setting('flow_definition_arn')} must be a flow definition ARN "
            "(arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"
        )
    return f"arn:{parts[1]}:sagemaker:{parts[3]}:{parts[4]}:human-loop/"


def _problem(adapter: TaskAdapter, item: Item) -> str | None:
    """Why `item` cannot be sent for this task type (what the manifest's rules make sure
    of an `Item`), or None.  Reasons never quote a value."""
    if not isinstance(item.id, str) or not item.id or len(item.id) > MAX_ID_CHARS:
        return f"id must be a non-empty string of at most {MAX_ID_CHARS} characters"
    if adapter.task is not TaskType.CUSTOM:  # Textract, Rekognition: an S3 object
        if isinstance(item.s3, S3Ref) and item.input_content is None:
            return None
        return f"a {adapter.task.value} item needs s3 (an S3Ref) and no input_content"
    content = item.input_content
    if not isinstance(content, str) or item.s3 is not None:
        return "a custom item needs input_content (a JSON document) and no s3"
    if len(content) > MAX_INPUT_CONTENT_CHARS:
        return f"input content is {len(content)} characters; the limit is {MAX_INPUT_CONTENT_CHARS}"
    try:
        orjson.loads(content)
    except orjson.JSONDecodeError:
        return "input_content does not hold a JSON document"
    return None


# -- figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitterStats:
    """A Submitter's figures at one moment.

    `counts` are the summary's counters since the Submitter opened (``started``,
    ``failed``, ``skipped`` for answers without a call, ``calls``, ``throttled``,
    ``retries``, ``recovered`` ...).
    """

    counts: Mapping[str, Any]
    in_flight: int  # sends under way
    waiting: int  # callers waiting for a slot of the in-flight cap
    concurrency: int  # the in-flight cap now
    rate: float  # the start API's current request rate (requests/second)
    paused: bool  # the in-progress loop quota is full: sends wait
    unreachable: bool  # the endpoint does not answer: sends wait
    shared: int  # submits that awaited another caller's send of the same id
    recent: int  # outcomes kept whole
    ledger_ids: int  # ids in the ledger index
    index_bytes: int  # memory the ledger index holds
    uptime: float  # seconds since the Submitter opened

    def as_dict(self) -> dict[str, Any]:
        """One flat, JSON-ready mapping (the counts, then the live figures)."""
        live = {k: v for k, v in vars(self).items() if k != "counts"}
        return {**self.counts, **live}


#: item counters and the attribute value each is reported under
_ITEMS: Final = ("started", "not_activated", "failed", "invalid", "unverified", "name_taken")
_SKIPS: Final = {"skipped": "done", "skipped_failed": "failed", "skipped_name_taken": "name_taken"}
_COUNTERS: Final = {  # name: (what it counts, unit, description)
    "a2ibatch.items": (lambda s: [(s.counts[n], {"status": n}) for n in _ITEMS], "{item}",
                       "items decided by a call, by status"),
    "a2ibatch.items.answered": (lambda s: [(s.counts[n], {"state": v}) for n, v in _SKIPS.items()],
                                "{item}", "items answered without a call, by the state known"),
    "a2ibatch.items.shared": ("shared", "{item}", "submits that awaited a send of the same id"),
    "a2ibatch.calls": ("calls", "{call}", "calls sent"),
    "a2ibatch.calls.throttled": ("throttled", "{call}", "calls throttled"),
    "a2ibatch.calls.retries": ("retries", "{call}", "calls retried"),
    "a2ibatch.loops.recovered": ("recovered", "{loop}", "loops found to exist after doubt"),
}  # fmt: skip
_GAUGES: Final = {
    "a2ibatch.in_flight": ("in_flight", "{item}", "sends under way"),
    "a2ibatch.waiting": ("waiting", "{caller}", "callers waiting for a slot"),
    "a2ibatch.concurrency": ("concurrency", "{item}", "the in-flight cap"),
    "a2ibatch.rate": ("rate", "{request}/s", "the start API's request rate"),
    "a2ibatch.paused": ("paused", "1", "1 while the in-progress loop quota is full"),
    "a2ibatch.unreachable": ("unreachable", "1", "1 while the endpoint does not answer"),
    "a2ibatch.ledger.ids": ("ledger_ids", "{id}", "ids in the ledger index"),
    "a2ibatch.ledger.index_bytes": ("index_bytes", "By", "memory of the ledger index"),
}


def instrument(submitter: Submitter, meter: Any | None = None) -> None:
    """Register observable counters and gauges of `submitter`'s figures on `meter` (an
    OpenTelemetry `Meter`; None: ``get_meter("a2ibatch")`` of the global provider).

    Observations carry the attribute ``task``.  The instruments hold the Submitter weakly
    and observe nothing once it is closed.
    """
    try:
        metrics = importlib.import_module("opentelemetry.metrics")
    except ImportError:
        raise ConfigError(
            "OpenTelemetry metrics need the opentelemetry-api package: pip install 'a2ibatch[otel]'"
        ) from None
    from . import __version__

    meter = meter or metrics.get_meter("a2ibatch", __version__)
    ref = weakref.ref(submitter)
    task = {"task": submitter.settings.task.value}

    def callback(what: Any) -> Callable[[Any], Iterable[Any]]:
        def read(stats: SubmitterStats) -> Iterable[tuple[float, Mapping[str, str]]]:
            if callable(what):
                return what(stats)  # type: ignore[no-any-return]
            value = getattr(stats, what) if hasattr(stats, what) else stats.counts[what]
            return [(float(value), {})]

        def observe(options: Any) -> Iterable[Any]:
            live = ref()
            if live is None or not live.open:
                return []
            return [metrics.Observation(v, {**task, **a}) for v, a in read(live.stats())]

        return observe

    for name, (what, unit, description) in _COUNTERS.items():
        meter.create_observable_counter(
            name, callbacks=[callback(what)], unit=unit, description=description
        )
    for name, (what, unit, description) in _GAUGES.items():
        meter.create_observable_gauge(
            name, callbacks=[callback(what)], unit=unit, description=description
        )
