"""The quota of an API counted from what its service admitted.

AWS admits or throttles a call when it arrives and answers a throttle at once;
an admitted call answers only after its processing time (tens of milliseconds for
StartHumanLoop, seconds for a Textract page).  So throttles are heard of within a network
round trip while successes lag, and a rate estimated from the answers lags too.
`AdmissionCount` counts sends instead: each throttled call was sent when the service's
bucket was empty, so between two throttled sends the calls the service admitted (sent minus
throttled), over the time between them, is the quota to within one call over that span,
whatever the bucket's burst and the processing time, as long as the bucket did not fill up
in between.  Such a stretch of throttles is an *episode*; it ends at a cut of the rate or
after `EPISODE_GAP_CALLS` sends without a throttle (the bucket may have filled since).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from typing import Final

#: an episode ends at a cut, or after this many sends without a throttle
EPISODE_GAP_CALLS: Final = 100.0
#: a share of calls throttled is taken over at least this many sends
SHARE_CALLS: Final = 50
#: sends are remembered this long (seconds), and since the episode began
SEND_MEMORY: Final = 5.0


class AdmissionCount:
    """The calls one API's service admitted, counted from the sends (see the module
    docstring).  The rate controller appends every send's time to `sends` (in order: it is
    on the hot path) and reports each throttled send."""

    __slots__ = ("_first", "_last", "_throttled", "sends")

    def __init__(self) -> None:
        self.sends: list[float] = []  # send times, ascending
        self._throttled: list[float] = []  # send times of throttled calls, ascending
        self._first = self._last = -math.inf  # the current episode's throttled sends

    def forget(self, now: float, rate: float) -> None:
        """Drop sends no count will look at (called now and then): those before the last
        few seconds, unless the current episode, still open, began earlier."""
        since = now - SEND_MEMORY
        if now - self._last <= EPISODE_GAP_CALLS / rate:
            since = min(since, self._first)
        for times in (self.sends, self._throttled):
            cut = bisect_left(times, since)
            if cut > len(times) // 2:
                del times[:cut]

    def throttled(self, sent: float, *, cut_at: float, rate: float, late: bool = False) -> None:
        """A call sent at `sent` was throttled; the rate was last cut at `cut_at`.  A `late`
        throttle came through a stall, when the service admitted nothing for a while: it
        ends the episode, and the next throttle starts one."""
        times = self._throttled
        if times and sent < times[-1]:
            insort(times, sent)
        else:
            times.append(sent)
        if late:
            self._first, self._last = math.inf, -math.inf
            return
        after_cut = sent >= cut_at > self._first
        if after_cut or sent - self._last > EPISODE_GAP_CALLS / rate:
            self._first = self._last = sent
        self._last = max(self._last, sent)

    def share(self) -> float:
        """Share of the calls sent since the episode began that were throttled (of the last
        `SHARE_CALLS` sends at least: two throttles in a row are no share)."""
        sends = self.sends
        since = min(self._first, sends[-SHARE_CALLS] if len(sends) >= SHARE_CALLS else 0.0)
        sent = len(sends) - bisect_left(sends, since)
        throttled = len(self._throttled) - bisect_left(self._throttled, since)
        return min(1.0, throttled / sent) if sent else 1.0

    def count(self) -> tuple[int, float]:
        """Admitted calls and seconds between the current episode's first and last
        throttled sends ((0, 0.0) before its second)."""
        first, last, throttled = self._first, self._last, self._throttled
        if not last > first:
            return 0, 0.0
        admitted = bisect_right(self.sends, last) - bisect_right(self.sends, first)
        admitted -= bisect_right(throttled, last) - bisect_right(throttled, first)
        return max(0, admitted), last - first
