"""Loop names: generated ones are valid, deterministic and distinct; explicit ones are checked.

Properties over random prefixes, flow definitions, task types, ids and payloads, with the
A2I rule written out independently here (1-63 characters of a-z, 0-9 and '-', starting and
ending with a letter or digit) rather than taken from the module under test.
"""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from a2ibatch._errors import ConfigError
from a2ibatch._naming import (
    DEFAULT_PREFIX,
    DIGEST_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PREFIX_LENGTH,
    Namer,
    check_prefix,
    looks_generated,
    loop_name,
    name_problem,
)

LOWER = string.ascii_lowercase + string.digits
FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/reviews"


def valid_name(name: str) -> bool:
    """The A2I rule, independently: 1-63 of a-z0-9-, no '-' at either end."""
    return (
        1 <= len(name) <= MAX_NAME_LENGTH
        and all(c in LOWER or c == "-" for c in name)
        and name[0] != "-"
        and name[-1] != "-"
    )


@st.composite
def prefixes(draw: st.DrawFn, max_size: int = MAX_PREFIX_LENGTH) -> str:
    """Valid prefixes: letters and digits with single or repeated inner dashes."""
    size = draw(st.integers(1, max_size))
    chars = draw(st.lists(st.sampled_from(LOWER + "-"), min_size=size, max_size=size))
    chars[0] = draw(st.sampled_from(LOWER))
    chars[-1] = draw(st.sampled_from(LOWER))
    return "".join(chars)


texts = st.text(max_size=40)  # any unicode, lone surrogates included
tasks = st.sampled_from(["custom", "textract", "rekognition"])
flows = st.one_of(st.just(FLOW), texts)


@given(prefixes())
def test_the_prefix_strategy_makes_valid_prefixes(prefix: str) -> None:
    assert valid_name(prefix) and len(prefix) <= MAX_PREFIX_LENGTH
    assert check_prefix(prefix) == prefix


@given(prefix=prefixes(), flow=flows, task=tasks, item_id=texts, payload=texts)
@example(prefix="a" * MAX_PREFIX_LENGTH, flow=FLOW, task="custom", item_id="", payload="")
@example(prefix="a", flow="", task="", item_id="\ud800", payload="\x00")
def test_generated_names_are_valid_for_every_valid_prefix(
    prefix: str, flow: str, task: str, item_id: str, payload: str
) -> None:
    name = loop_name(prefix, flow, task, item_id, payload)
    assert valid_name(name), name
    assert len(name) <= MAX_NAME_LENGTH
    assert len(name) == len(prefix) + 1 + DIGEST_LENGTH
    assert name_problem(name) is None


@given(prefix=prefixes(), flow=flows, task=tasks, item_id=texts, payload=texts)
def test_generated_names_are_deterministic(
    prefix: str, flow: str, task: str, item_id: str, payload: str
) -> None:
    first = loop_name(prefix, flow, task, item_id, payload)
    assert loop_name(prefix, flow, task, item_id, payload) == first
    # the same name from a fresh Namer (another run of the same job)
    assert Namer(prefix, flow, task).name(item_id, None, payload) == (first, None)


def test_a_known_name_never_changes() -> None:
    # Reruns after an upgrade must find the loops the previous version started.
    assert loop_name("a2ib", FLOW, "custom", "item-1", '{"x":1}') == loop_name(
        "a2ib", FLOW, "custom", "item-1", '{"x":1}'
    )
    name = loop_name(DEFAULT_PREFIX, FLOW, "custom", "item-1", '{"x":1}')
    assert name.startswith("a2ib-") and len(name) == 4 + 1 + DIGEST_LENGTH
    # names computed by earlier versions, for short and long parts
    assert name == "a2ib-bfb63068066371c42ac85247519a1a5b"
    textract = loop_name("a2ib", FLOW, "textract", "doc-1", "s3://scans/forms/a.png\n")
    assert textract == "a2ib-efa13c523a29f70a17af80a34de3f426"
    long = loop_name("a2ib", FLOW, "custom", "x" * 1500, "é" * 600)
    assert long == "a2ib-57d4df0e609265408d22531cfeb56acc"


def reference_name(prefix: str, flow: str, task: str, item_id: str, payload: str) -> str:
    """The naming rule written out: BLAKE2b-128 over the length-prefixed UTF-8 parts."""
    h = hashlib.blake2b(digest_size=DIGEST_LENGTH // 2)
    for part in (flow, task, item_id, payload):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big") + data)
    return f"{prefix}-{h.hexdigest()}"


#: texts whose UTF-8 length is near the end of the ready-made length prefixes (1024)
long_texts = st.builds(lambda n, tail: "x" * n + tail, st.integers(1010, 1030), st.text(max_size=4))


@settings(max_examples=300)
@example(prefix="a", flow=FLOW, task="custom", item_id="\ud800", payload="x" * 1030)
@example(prefix="a", flow=FLOW, task="custom", item_id="x" * 1024, payload="\udfff")
@given(
    prefix=prefixes(),
    flow=flows,
    task=tasks,
    item_id=st.one_of(texts, long_texts),
    payload=st.one_of(texts, long_texts),
)
def test_names_follow_the_rule(
    prefix: str, flow: str, task: str, item_id: str, payload: str
) -> None:
    expected = reference_name(prefix, flow, task, item_id, payload)
    assert loop_name(prefix, flow, task, item_id, payload) == expected
    namer = Namer(prefix, flow, task)
    assert namer.name(item_id, None, payload) == (expected, None)
    assert namer.generated(item_id, payload) == expected


parts = st.tuples(flows, tasks, texts, texts)


@settings(max_examples=300)
@given(prefix=prefixes(), a=parts, b=parts)
def test_distinct_inputs_give_distinct_names(
    prefix: str, a: tuple[str, str, str, str], b: tuple[str, str, str, str]
) -> None:
    assume(a != b)
    assert loop_name(prefix, *a) != loop_name(prefix, *b)


@given(prefix=prefixes(), left=texts, right=texts, extra=st.text(min_size=1, max_size=5))
def test_moving_text_between_parts_changes_the_name(
    prefix: str, left: str, right: str, extra: str
) -> None:
    # Length-prefixed parts: "ab" + "c" is not "a" + "bc".
    a = loop_name(prefix, FLOW, "custom", left + extra, right)
    b = loop_name(prefix, FLOW, "custom", left, extra + right)
    assert a != b


@given(item_id=texts, payload=texts)
def test_every_part_of_the_job_counts(item_id: str, payload: str) -> None:
    names = {
        loop_name("a2ib", FLOW, "custom", item_id, payload),
        loop_name("a2ib", FLOW + "-2", "custom", item_id, payload),
        loop_name("a2ib", FLOW, "textract", item_id, payload),
        loop_name("a2ic", FLOW, "custom", item_id, payload),
    }
    assert len(names) == 4


@given(st.text(max_size=80))
@example("")
@example("a" * 63)
@example("a" * 64)
@example("a--b")
@example("-a")
@example("a-")
@example("A")
@example("a\n")
def test_name_problem_agrees_with_the_rule(name: str) -> None:
    assert (name_problem(name) is None) == valid_name(name)


@pytest.mark.parametrize("value", ["a\n", "loop-1\n"])
def test_a_final_newline_is_not_part_of_a_valid_name(value: str) -> None:
    assert name_problem(value) is not None
    with pytest.raises(ConfigError):
        check_prefix(value)


@given(st.from_regex(r"[a-z0-9](-*[a-z0-9]){0,70}", fullmatch=True))
def test_name_problem_on_well_formed_names_is_about_length(name: str) -> None:
    problem = name_problem(name)
    if len(name) <= MAX_NAME_LENGTH:
        assert problem is None
    else:
        assert problem == f"loop name is {len(name)} characters long; the limit is 63"


@pytest.mark.parametrize("value", [None, 5, b"name", ["a"]])
def test_name_problem_refuses_non_strings(value: object) -> None:
    assert name_problem(value) == "loop name must be a string"


@given(st.text(max_size=60))
@example("")
@example("a" * MAX_PREFIX_LENGTH)
@example("a" * (MAX_PREFIX_LENGTH + 1))
@example("a-")
@example("a--b")
@example("a\n")
def test_check_prefix_accepts_exactly_the_valid_prefixes(prefix: str) -> None:
    ok = valid_name(prefix) and len(prefix) <= MAX_PREFIX_LENGTH
    if ok:
        assert check_prefix(prefix) == prefix
    else:
        with pytest.raises(ConfigError, match="name prefix must be"):
            check_prefix(prefix)


def test_the_longest_prefix_still_leaves_room_for_the_digest() -> None:
    assert MAX_PREFIX_LENGTH + 1 + DIGEST_LENGTH == MAX_NAME_LENGTH
    name = loop_name("p" * MAX_PREFIX_LENGTH, FLOW, "custom", "id", "x")
    assert len(name) == MAX_NAME_LENGTH and name_problem(name) is None


@given(prefix=prefixes(), flow=flows, task=tasks, item_id=texts, payload=texts)
def test_generated_names_look_generated(
    prefix: str, flow: str, task: str, item_id: str, payload: str
) -> None:
    assert looks_generated(loop_name(prefix, flow, task, item_id, payload), prefix)


@given(prefix=prefixes(max_size=20), other=prefixes(max_size=20), payload=texts)
def test_names_of_another_prefix_do_not_look_generated_by_this_one(
    prefix: str, other: str, payload: str
) -> None:
    name = loop_name(other, FLOW, "custom", "id", payload)
    if other != prefix:
        # Only possible when `other` is `prefix` plus a dash and a hex tail of the same
        # length as the digest, which short prefixes cannot be.
        assert not looks_generated(name, prefix)


@settings(max_examples=300)
@given(
    prefix=prefixes(max_size=20),
    name=st.from_regex(r"[a-z0-9](-*[a-z0-9]){0,62}", fullmatch=True),
)
def test_most_explicit_names_do_not_look_generated(prefix: str, name: str) -> None:
    if looks_generated(name, prefix):
        # the only explicit names refused: the prefix, a dash, then 32 hex characters
        tail = name[len(prefix) + 1 :]
        assert name.startswith(prefix + "-") and len(tail) == DIGEST_LENGTH
        assert set(tail) <= set("abcdefghijklmnopqrstuvwxyz234567")


def test_explicit_names_that_look_generated_are_rare() -> None:
    import random

    rng = random.Random(7)
    alphabet = LOWER + "-"
    hits = 0
    for _ in range(10_000):
        size = rng.randint(1, MAX_NAME_LENGTH)
        name = "".join(rng.choice(alphabet) for _ in range(size)).strip("-") or "a"
        hits += looks_generated(name, "a2ib")
    assert hits == 0
    typical = ["invoice-2026-11-0001", "claim-123", "a2ib-review-1", "my-loop"]
    assert not any(looks_generated(n, "a2ib") for n in typical)


def test_namer_refuses_bad_repeated_and_generated_looking_explicit_names() -> None:
    namer = Namer("a2ib", FLOW, "custom")
    assert namer.name("1", "chosen", "{}") == ("chosen", None)
    _, reason = namer.name("2", "chosen", "{}")
    assert reason is not None and "earlier line" in reason
    _, reason = namer.name("3", "Bad_Name", "{}")
    assert reason is not None and "a-z" in reason
    generated = loop_name("a2ib", FLOW, "custom", "4", "{}")
    _, reason = namer.name("5", generated, "{}")
    assert reason is not None and "shape of names generated" in reason
    with pytest.raises(ConfigError):
        Namer("Bad", FLOW, "custom")
