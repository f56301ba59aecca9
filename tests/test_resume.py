"""The resume point: a rerun reads the ledger's saved index and seeks past the settled part
of the manifest, with the same decisions as a full read; any doubt means a full read."""

from __future__ import annotations

import os
import random
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from a2ibatch import Status, TaskType, submit
from a2ibatch._counters import Counters
from a2ibatch._marks import Marking
from a2ibatch.ledger import RESUME_SUFFIX, ManifestMark, load_ledger
from a2ibatch.manifest import Boundary
from helpers import (
    TASKS,
    emulator_get,
    emulator_post,
    final_outcomes,
    line_for,
    settings,
    submit_args,
    write_manifest,
)

pytestmark = pytest.mark.anyio


def append_lines(path: Path, task: TaskType, numbers: range) -> None:
    with path.open("ab") as f:
        for i in numbers:
            f.write(orjson.dumps(line_for(task, i)) + b"\n")


async def calls(url: str) -> int:
    """The service's calls so far (a run that sends reads its quota first: not counted)."""
    stats = await emulator_get(url, "/_emulator/stats")
    return int(sum(n for op, n in stats["calls"].items() if op != "ListServiceQuotas"))


@pytest.mark.parametrize("task", TASKS)
async def test_a_rerun_seeks_past_the_settled_lines_and_sends_only_new_ones(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 300, extra=[b"not json", b"{}"])
    s = settings(task, emulator.url, tmp_path, manifest)
    first = await submit(s)
    assert first.resumed_after_line is None
    point = Path(str(s.ledger) + RESUME_SUFFIX)
    assert point.exists() and stat.S_IMODE(point.stat().st_mode) == 0o600

    append_lines(manifest, task, range(300, 340))
    before = await calls(emulator.url)
    again = await submit(s)
    assert again.resumed_after_line == 302  # every line of the first manifest was settled
    assert again.counts["skipped"] == 300 and again.counts["skipped_invalid"] == 2
    assert again.counts["started"] + again.counts["not_activated"] == 40
    assert await calls(emulator.url) - before == 40
    assert again.exit_code == 1  # the invalid lines still need attention, as on a full read

    outcomes = final_outcomes(s.ledger)
    assert sum(o["status"] in ("started", "not_activated") for o in outcomes.values()) == 340
    # The index the rerun ended with is the one a full read of the ledger builds.
    full = load_ledger(s.ledger)
    assert full.counts[Status.STARTED] + full.counts[Status.NOT_ACTIVATED] == 340


async def test_a_changed_manifest_prefix_means_a_full_read(emulator: Any, tmp_path: Path) -> None:
    task = TaskType.CUSTOM
    manifest = write_manifest(tmp_path / "m.jsonl", task, 100)
    s = settings(task, emulator.url, tmp_path, manifest)
    await submit(s)
    lines = manifest.read_bytes().splitlines()
    lines[10] = lines[10].replace(b"claim 10", b"claim X0")  # same length, other bytes
    lines.append(orjson.dumps(line_for(task, 100)))
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    before = await calls(emulator.url)
    again = await submit(s)
    assert again.resumed_after_line is None
    # A full read: the edited line's id is done, so it is skipped; only the new line is sent.
    assert again.counts["skipped"] == 100 and again.counts["started"] == 1
    assert await calls(emulator.url) - before == 1


async def test_a_point_that_does_not_describe_the_ledger_is_not_used(
    emulator: Any, tmp_path: Path
) -> None:
    task = TaskType.CUSTOM
    manifest = write_manifest(tmp_path / "m.jsonl", task, 50)
    s = settings(task, emulator.url, tmp_path, manifest)
    await submit(s)
    ledger = Path(s.ledger)
    point = Path(str(ledger) + RESUME_SUFFIX)
    saved = point.read_bytes()
    # Another job's history under the same name: the ledger is new, the point is old.
    ledger.unlink()
    await submit(
        settings(task, emulator.url, tmp_path, write_manifest(tmp_path / "n.jsonl", task, 5))
    )
    point.write_bytes(saved)
    again = await submit(s)
    assert again.resumed_after_line is None
    assert again.counts["skipped"] == 5 and again.counts["started"] == 45
    # the first job's loops exist at the service: found, not doubled
    assert again.counts["recovered"] == 45
    assert len(await emulator_get(emulator.url, "/_emulator/loops")) == 50

    # A damaged point (its table does not match its digest) is a full read too.
    data = bytearray(point.read_bytes())
    data[-3] ^= 0xFF
    point.write_bytes(bytes(data))
    before = await calls(emulator.url)
    third = await submit(s)
    assert third.resumed_after_line is None and third.counts["skipped"] == 50
    assert await calls(emulator.url) == before


@pytest.mark.parametrize("emulator", [{"quota": 0.001, "burst": 3}], indirect=True)
async def test_retry_failed_does_not_seek_past_failed_lines(emulator: Any, tmp_path: Path) -> None:
    # Few items: after the burst, the controller paces the throttled rest at its minimum.
    task = TaskType.CUSTOM
    manifest = write_manifest(tmp_path / "m.jsonl", task, 9)
    s = settings(task, emulator.url, tmp_path, manifest, max_attempts=1)
    first = await submit(s)
    assert first.counts["started"] == 3 and first.counts["failed"] == 6
    plain = await submit(s)
    assert plain.resumed_after_line == 9  # failed lines are settled for a plain rerun
    assert plain.counts["skipped_failed"] == 6 and plain.counts["calls"] == 0
    await emulator_post(emulator.url, "/_emulator/config", {"quota": None})
    retried = await submit(settings(task, emulator.url, tmp_path, manifest, retry_failed=True))
    assert retried.resumed_after_line is None
    assert retried.counts["started"] == 6 and retried.counts["skipped"] == 3


async def test_a_repeated_id_after_the_mark_gets_no_second_loop(
    emulator: Any, tmp_path: Path
) -> None:
    task = TaskType.CUSTOM
    manifest = write_manifest(tmp_path / "m.jsonl", task, 20)
    s = settings(task, emulator.url, tmp_path, manifest)
    await submit(s)
    with manifest.open("ab") as f:  # item-00003 again, with other content
        f.write(orjson.dumps({"id": "item-00003", "input": {"text": "other"}}) + b"\n")
    again = await submit(s)
    assert again.resumed_after_line == 20
    assert again.counts["calls"] == 0 and again.counts["skipped"] == 21
    loops = await emulator_get(emulator.url, "/_emulator/loops")
    assert len(loops) == 20


@pytest.mark.parametrize("emulator", [{"latency_ms": 5.0, "quota": 200.0}], indirect=True)
async def test_kill_9_with_points_saved_often_never_doubles_or_loses(
    emulator: Any, tmp_path: Path
) -> None:
    # Points every 0.1 s, kills at random moments, and the manifest growing between runs:
    # every rerun starts from a point (or the ledger) and the end state is exact.
    rng = random.Random(7)
    task = TaskType.CUSTOM
    manifest = write_manifest(tmp_path / "m.jsonl", task, 300)
    ledger = tmp_path / "ledger.jsonl"
    config = tmp_path / "a2ibatch.toml"
    config.write_text("resume_interval = 0.1\n")
    command = [
        sys.executable, "-m", "a2ibatch",
        *submit_args(emulator.url, manifest, ledger, "--config", str(config), "--no-progress",
                     "--no-preflight", "--rate", "150"),
    ]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    total, kills = 300, 0
    for _ in range(40):
        async with await anyio.open_process(command, env=env) as process:
            with anyio.move_on_after(rng.uniform(0.8, 2.0)):
                code = await process.wait()
                if total >= 600:
                    break
                append_lines(manifest, task, range(total, total + 100))
                total += 100
                continue
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
            if kills % 2 == 0 and total < 600:
                append_lines(manifest, task, range(total, total + 100))
                total += 100
    else:
        raise AssertionError("the job never finished")
    assert kills >= 2 and code == 0
    outcomes = final_outcomes(ledger)
    loops = await emulator_get(emulator.url, "/_emulator/loops")
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert len(outcomes) == total == 600
    assert {o["status"] for o in outcomes.values()} == {"started"}
    assert {o["loop_name"] for o in outcomes.values()} == {loop["name"] for loop in loops}
    assert stats["inputs_with_multiple_loops"] == 0 and stats["loops_created"] == 600


# -- the marking, as a property ---------------------------------------------------------


@hsettings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=60),
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_a_mark_never_passes_an_unsettled_entry(
    codes: list[int], gaps: list[int], rng: random.Random
) -> None:
    # Entries taken in order (code 0: sent, settled later in a random order, some never);
    # boundaries between them.  Every mark must lie at a boundary before the first entry not
    # settled when it was taken, and its tally must count exactly the entries before it.
    counters = Counters()
    marking = Marking("m.jsonl", 1, 0, None, counters)
    marking.boundary(Boundary(0, 0, 0, 0, "d0"))
    places, at = [0], 0
    for gap in gaps:
        at += gap
        if at < len(codes):
            places.append(at)
    settled = [code != 0 for code in codes]
    open_ordinals = []
    for n, code in enumerate(codes):
        assert marking.taken(code) == n
        if code == 0:
            open_ordinals.append(n)
        if n + 1 in places:
            marking.boundary(Boundary(n + 1, n + 1, n + 1, n + 1, f"d{n + 1}"))
    rng.shuffle(open_ordinals)
    never = set(open_ordinals[: len(open_ordinals) // 3])
    for n in open_ordinals:
        if n in never:
            continue
        marking.settled(n, Status.STARTED)
        settled[n] = True
        mark = marking.mark()
        first_open = next((i for i, done in enumerate(settled) if not done), len(codes))
        # the last boundary at or before the settled prefix (none before line 1: no mark)
        expected = max(p for p in places if p <= first_open)
        if expected == 0:
            assert mark is None
            continue
        assert mark is not None and mark.line == expected
        assert sum(mark.tally.values()) == mark.line
        expected_done = sum(1 for i in range(mark.line) if codes[i] in (0, 1))
        assert mark.tally.get("skipped", 0) == expected_done


def test_a_resumed_mark_is_kept_only_if_the_reader_started_there() -> None:
    mark = ManifestMark("m.jsonl", 10, 500, 600, "d", tally={"skipped": 9, "skipped_invalid": 1})
    counters = Counters()
    kept = Marking("m.jsonl", 1, 0, mark, counters)
    kept.boundary(Boundary(0, 10, 500, 500, "d10"))
    assert kept.resumed_after == 10 and counters.skipped == 9 and counters.skipped_invalid == 1
    again = kept.mark()  # nothing newly settled: the same place, verified up to it
    assert again is not None
    assert (again.line, again.offset, again.tally) == (mark.line, mark.offset, mark.tally)

    dropped_counters = Counters()
    dropped = Marking("m.jsonl", 1, 0, mark, dropped_counters)
    dropped.boundary(Boundary(0, 0, 0, 0, "d0"))  # the manifest changed: read from the top
    assert dropped.resumed_after is None and dropped_counters.skipped == 0
    assert dropped.mark() is None
