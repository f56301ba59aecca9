"""The manifest reader: one `Item` or `Invalid` per non-blank line, reasons without content.

Every line rule has its own case, run for each task type it applies to; sources are local
files (plain and gzip), stdin and S3 objects on a moto server.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2ibatch import manifest as _manifest
from a2ibatch._errors import ConfigError, ManifestError
from a2ibatch._idtable import IdTable, digest
from a2ibatch._models import MAX_INPUT_CONTENT_CHARS, Invalid, Item, S3Ref, TaskType
from a2ibatch.manifest import _build, _csv, _lines, _rules, _sources, read_manifest

pytestmark = pytest.mark.anyio

TASKS = list(TaskType)
SECRET = "4111-1111-1111-1111 Jane Q. Public"

#: the task-specific fields of a valid line, per task type
BODY: dict[TaskType, dict[str, Any]] = {
    TaskType.CUSTOM: {"input": {"text": "claim", "n": 1}},
    TaskType.TEXTRACT: {"document": "s3://scans/forms/a.png"},
    TaskType.REKOGNITION: {"image": "s3://uploads/images/a.jpg"},
}
#: the field naming the S3 object, per built-in task type
S3_FIELD = {TaskType.TEXTRACT: "document", TaskType.REKOGNITION: "image"}
BUILTIN = [TaskType.TEXTRACT, TaskType.REKOGNITION]


def good(task: TaskType, item_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, **BODY[task], **extra}


def jsonl(*lines: dict[str, Any] | bytes) -> bytes:
    return b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)


async def collect(source: str, task: TaskType, **kwargs: Any) -> list[Item | Invalid]:
    return [entry async for entry in read_manifest(source, task, **kwargs)]


async def read(data: bytes, task: TaskType, **kwargs: Any) -> list[Item | Invalid]:
    """Read `data` as a manifest on stdin."""
    return await collect("-", task, stdin=io.BytesIO(data), **kwargs)


async def one(obj: dict[str, Any] | bytes, task: TaskType) -> Item | Invalid:
    entries = await read(jsonl(obj), task)
    assert len(entries) == 1
    return entries[0]


async def invalid(obj: dict[str, Any] | bytes, task: TaskType) -> Invalid:
    entry = await one(obj, task)
    assert isinstance(entry, Invalid), entry
    return entry


# -- valid lines -----------------------------------------------------------------------------


async def test_custom_input_is_sent_as_compact_json() -> None:
    entry = await one({"id": "a", "input": {"text": "café", "n": [1, 2.5, None]}}, TaskType.CUSTOM)
    assert entry == Item("a", 1, input_content='{"text":"café","n":[1,2.5,null]}')


@pytest.mark.parametrize("value", [0, "text", [1, 2], True, {"a": {}}])
async def test_custom_input_may_be_any_json_value_but_null(value: Any) -> None:
    entry = await one({"id": "a", "input": value}, TaskType.CUSTOM)
    assert isinstance(entry, Item)
    assert entry.input_content == orjson.dumps(value).decode()


async def test_custom_input_content_is_sent_verbatim() -> None:
    text = '{ "spaced" : [1,  2] }'
    entry = await one({"id": "a", "input_content": text}, TaskType.CUSTOM)
    assert entry == Item("a", 1, input_content=text)


async def test_textract_line() -> None:
    obj = {
        "id": "t",
        "document": "s3://scans/dir/form 1.png",
        "version": "v3",
        "feature_types": ["TABLES", "FORMS"],
    }
    entry = await one(obj, TaskType.TEXTRACT)
    assert entry == Item(
        "t", 1, s3=S3Ref("scans", "dir/form 1.png", "v3"), feature_types=("TABLES", "FORMS")
    )


async def test_rekognition_line() -> None:
    obj = {"id": "r", "image": "s3://uploads/x.jpg", "min_confidence": 55}
    entry = await one(obj, TaskType.REKOGNITION)
    assert entry == Item("r", 1, s3=S3Ref("uploads", "x.jpg"), min_confidence=55.0)
    assert isinstance(entry, Item) and type(entry.min_confidence) is float


@pytest.mark.parametrize("task", TASKS)
async def test_optional_fields_default_to_none(task: TaskType) -> None:
    entry = await one(good(task, "a"), task)
    assert isinstance(entry, Item)
    assert entry.name is None and entry.content_classifiers is None
    assert entry.feature_types is None and entry.min_confidence is None
    assert (entry.input_content is None) == (task is not TaskType.CUSTOM)
    assert (entry.s3 is None) == (task is TaskType.CUSTOM)


@pytest.mark.parametrize("task", TASKS)
async def test_name_and_content_classifiers(task: TaskType) -> None:
    classifiers = ["FreeOfAdultContent", "FreeOfPersonallyIdentifiableInformation"]
    entry = await one(good(task, "a", name="my-loop-1", content_classifiers=classifiers), task)
    assert isinstance(entry, Item)
    assert entry.name == "my-loop-1"
    assert entry.content_classifiers == tuple(classifiers)


@pytest.mark.parametrize("task", TASKS)
async def test_an_empty_classifier_list_means_none_for_this_item(task: TaskType) -> None:
    entry = await one(good(task, "a", content_classifiers=[]), task)
    assert isinstance(entry, Item) and entry.content_classifiers == ()


@pytest.mark.parametrize("task", TASKS)
async def test_null_means_absent(task: TaskType) -> None:
    nulls = {"name": None, "content_classifiers": None, "version": None}
    nulls.update({"feature_types": None} if task is TaskType.TEXTRACT else {})
    nulls.update({"min_confidence": None} if task is TaskType.REKOGNITION else {})
    nulls.update({"document": None} if task is not TaskType.TEXTRACT else {})
    if task is not TaskType.CUSTOM:
        nulls.pop("version")
    entry = await one(good(task, "a", **nulls), task)
    assert isinstance(entry, Item) and entry.name is None


@pytest.mark.parametrize("task", TASKS)
async def test_unknown_fields_are_ignored(task: TaskType) -> None:
    entry = await one(good(task, "a", owner="team-a", meta={"x": [1]}, Input=3), task)
    assert isinstance(entry, Item)


# -- broken lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "a", "input": ', "not valid JSON"),
        (b"nonsense", "not valid JSON"),
        (b'{"id": "a"} trailing', "not valid JSON"),
        (b"[1, 2, 3]", "an array, not a JSON object"),
        (b'"just a string"', "a string, not a JSON object"),
        (b"42", "a number, not a JSON object"),
        (b"null", "null, not a JSON object"),
        (b'{"id": "caf\xe9", "input": 1}', "not valid UTF-8"),
        (b'\xff\xfe{"id": "a"}', "not valid UTF-8"),
    ],
)
async def test_unreadable_lines(task: TaskType, raw: bytes, reason: str) -> None:
    entry = await invalid(raw, task)
    assert reason in entry.reason and entry.id is None and entry.line == 1


@pytest.mark.parametrize("task", TASKS)
async def test_a_bad_byte_spoils_only_its_own_line(task: TaskType) -> None:
    data = jsonl(good(task, "a"), b'{"id": "b\xc3", "x": 1}', good(task, "c"))
    entries = await read(data, task)
    assert [type(e) for e in entries] == [Item, Invalid, Item]
    assert [e.line for e in entries] == [1, 2, 3]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing field 'id'"),
        (7, "field 'id' must be a string, not a number"),
        (["a"], "field 'id' must be a string, not an array"),
        ("", "field 'id' is empty"),
        ("x" * 1001, "field 'id' is 1001 characters long; the limit is 1000"),
    ],
)
async def test_id_rules(task: TaskType, value: Any, reason: str) -> None:
    obj = good(task, "a")
    if value is None:
        del obj["id"]
    else:
        obj["id"] = value
    entry = await invalid(obj, task)
    assert entry.reason == reason and entry.id is None


@pytest.mark.parametrize("task", TASKS)
async def test_an_id_of_1000_characters_is_fine(task: TaskType) -> None:
    entry = await one(good(task, "é" * 1000), task)
    assert isinstance(entry, Item)


@pytest.mark.parametrize("task", TASKS)
async def test_the_second_occurrence_of_an_id_is_invalid(task: TaskType) -> None:
    bad = {"id": "b", "what": "broken"}  # invalid, yet its id counts
    data = jsonl(good(task, "a"), b"", bad, good(task, "a"), good(task, "b"), good(task, "a"))
    entries = await read(data, task)
    assert [e.line for e in entries] == [1, 3, 4, 5, 6]
    assert isinstance(entries[0], Item)
    assert entries[2] == Invalid(4, "duplicate id; first seen on line 1", "a")
    assert entries[3] == Invalid(5, "duplicate id; first seen on line 3", "b")
    assert entries[4] == Invalid(6, "duplicate id; first seen on line 1", "a")


@pytest.mark.parametrize("task", TASKS)
async def test_blank_lines_are_skipped_and_lines_count_physically(task: TaskType) -> None:
    data = b"\n   \n" + jsonl(good(task, "a")) + b"\t\r\n\n" + orjson.dumps(good(task, "b"))
    entries = await read(data, task)
    assert [(e.line, e.id) for e in entries] == [(3, "a"), (6, "b")]


@pytest.mark.parametrize("task", TASKS)
async def test_crlf_line_ends_and_a_byte_order_mark(task: TaskType) -> None:
    data = b"\xef\xbb\xbf" + orjson.dumps(good(task, "a")) + b"\r\n" + orjson.dumps(good(task, "b"))
    entries = await read(data + b"\r\n", task)
    assert [(type(e), e.line) for e in entries] == [(Item, 1), (Item, 2)]


# custom tasks


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"id": "a"}, "needs field 'input' or 'input_content'"),
        ({"id": "a", "input": None}, "needs field 'input' or 'input_content'"),
        ({"id": "a", "input": 1, "input_content": "{}"}, "has both 'input' and 'input_content'"),
        ({"id": "a", "input_content": 5}, "field 'input_content' must be a string, not a number"),
        ({"id": "a", "input_content": {"x": 1}}, "must be a string, not an object"),
        ({"id": "a", "input_content": "not json"}, "'input_content' does not hold a JSON document"),
        ({"id": "a", "input_content": ""}, "'input_content' does not hold a JSON document"),
    ],
)
async def test_custom_input_rules(obj: dict[str, Any], reason: str) -> None:
    entry = await invalid(obj, TaskType.CUSTOM)
    assert reason in entry.reason and entry.id == "a"


@pytest.mark.parametrize("field", ["input", "input_content"])
async def test_input_content_limit_counts_characters_not_bytes(field: str) -> None:
    def line(chars: int) -> dict[str, Any]:
        text = "é" * (chars - 2)  # "é" is two bytes in UTF-8; the quotes make two more chars
        value: Any = text if field == "input" else orjson.dumps(text).decode()
        return {"id": f"n{chars}", field: value}

    entries = await read(
        jsonl(line(MAX_INPUT_CONTENT_CHARS), line(MAX_INPUT_CONTENT_CHARS + 1)), TaskType.CUSTOM
    )
    assert isinstance(entries[0], Item)
    assert entries[0].input_content is not None
    assert len(entries[0].input_content) == MAX_INPUT_CONTENT_CHARS
    assert len(entries[0].input_content.encode()) > MAX_INPUT_CONTENT_CHARS
    assert isinstance(entries[1], Invalid)
    assert entries[1].reason == (
        f"input content is {MAX_INPUT_CONTENT_CHARS + 1} characters long; "
        f"the limit is {MAX_INPUT_CONTENT_CHARS}"
    )


# S3 objects


@pytest.mark.parametrize("task", BUILTIN)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "needs field '{f}' (s3://bucket/key)"),
        (3, "field '{f}' must be a string, not a number"),
        ("https://scans.s3.amazonaws.com/a.png", "field '{f}' must be an S3 URI"),
        ("scans/a.png", "field '{f}' must be an S3 URI"),
        ("s3:/scans/a.png", "field '{f}' must be an S3 URI"),
        ("s3://scans", "field '{f}' has no object key"),
        ("s3://scans/", "field '{f}' has no object key"),
        ("s3:///a.png", "names an invalid bucket: a bucket name has 3-63 characters"),
        ("s3://ab/a.png", "names an invalid bucket: a bucket name has 3-63 characters"),
        ("s3://" + "b" * 64 + "/a.png", "a bucket name has 3-63 characters"),
        ("s3://Scans/a.png", "a bucket name holds only a-z, 0-9, '.' and '-'"),
        ("s3://my_scans/a.png", "a bucket name holds only a-z, 0-9, '.' and '-'"),
        ("s3://-scans/a.png", "starts and ends with a letter or digit"),
        ("s3://scans./a.png", "starts and ends with a letter or digit"),
        ("s3://my..scans/a.png", "no two adjacent periods"),
        ("s3://192.168.10.1/a.png", "is not an IP address"),
        ("s3://xn--scans/a.png", "no reserved prefix or suffix"),
        ("s3://scans-s3alias/a.png", "no reserved prefix or suffix"),
        ("s3://scans/" + "k" * 1025, "has an object key longer than 1024 bytes"),
        ("s3://scans/" + "é" * 513, "has an object key longer than 1024 bytes"),
    ],
)
async def test_s3_uri_rules(task: TaskType, value: Any, reason: str) -> None:
    field = S3_FIELD[task]
    obj: dict[str, Any] = {"id": "a"}
    if value is not None:
        obj[field] = value
    entry = await invalid(obj, task)
    assert reason.format(f=field) in entry.reason, entry.reason
    assert entry.id == "a"


@pytest.mark.parametrize("task", BUILTIN)
@pytest.mark.parametrize(
    "uri",
    ["s3://abc/k", "s3://a.b-c.9/dir/", "s3://" + "b" * 63 + "/k", "s3://scans/a/b//c?x#y"],
)
async def test_valid_s3_uris(task: TaskType, uri: str) -> None:
    entry = await one({"id": "a", S3_FIELD[task]: uri}, task)
    assert isinstance(entry, Item) and entry.s3 is not None
    assert entry.s3.uri == uri


@pytest.mark.parametrize("task", BUILTIN)
@pytest.mark.parametrize("version", [3, "", ["v1"]])
async def test_version_must_be_a_non_empty_string(task: TaskType, version: Any) -> None:
    entry = await invalid(good(task, "a", version=version), task)
    assert "field 'version' must be a non-empty string" in entry.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "field 'feature_types' must not be empty"),
        ("FORMS", "field 'feature_types' must be a list of strings, not a string"),
        (["FORMS", 1], "must be a list of strings"),
        (["FORMS", ["TABLES"]], "must be a list of strings"),
        (["forms"], "field 'feature_types' holds an unknown value"),
        (["FORMS", "FORMS"], "field 'feature_types' repeats a value"),
    ],
)
async def test_feature_types_rules(value: Any, reason: str) -> None:
    entry = await invalid(good(TaskType.TEXTRACT, "a", feature_types=value), TaskType.TEXTRACT)
    assert reason in entry.reason


async def test_every_feature_type_is_accepted() -> None:
    types = ["TABLES", "FORMS", "QUERIES", "SIGNATURES", "LAYOUT"]
    entry = await one(good(TaskType.TEXTRACT, "a", feature_types=types), TaskType.TEXTRACT)
    assert isinstance(entry, Item) and entry.feature_types == tuple(types)


@pytest.mark.parametrize("value", [-0.1, 100.5, "50", True, [50], {"v": 1}])
async def test_min_confidence_rules(value: Any) -> None:
    obj = good(TaskType.REKOGNITION, "a", min_confidence=value)
    entry = await invalid(obj, TaskType.REKOGNITION)
    assert entry.reason == "field 'min_confidence' must be a number from 0 to 100"


@pytest.mark.parametrize("value", [0, 100, 55.5])
async def test_min_confidence_bounds(value: float) -> None:
    entry = await one(good(TaskType.REKOGNITION, "a", min_confidence=value), TaskType.REKOGNITION)
    assert isinstance(entry, Item) and entry.min_confidence == value


# any task


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Bad_Name", "may hold only a-z, 0-9 and '-'"),
        ("name\n", "may hold only a-z, 0-9 and '-'"),
        ("-lead", "must start and end with a letter or digit"),
        ("", "loop name is empty"),
        ("a" * 64, "loop name is 64 characters long; the limit is 63"),
        (12, "loop name must be a string"),
    ],
)
async def test_name_rules(task: TaskType, name: Any, reason: str) -> None:
    entry = await invalid(good(task, "a", name=name), task)
    assert entry.reason.startswith("field 'name': ") and reason in entry.reason


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("FreeOfAdultContent", "must be a list of strings, not a string"),
        (["FreeOfAdultContent", None], "must be a list of strings"),
        (["FreeOfAdultContent", "Nope"], "holds an unknown value"),
        (["FreeOfAdultContent", "FreeOfAdultContent"], "repeats a value"),
    ],
)
async def test_content_classifier_rules(task: TaskType, value: Any, reason: str) -> None:
    entry = await invalid(good(task, "a", content_classifiers=value), task)
    assert entry.reason.startswith("field 'content_classifiers'") and reason in entry.reason


FOREIGN = [
    (task, field, owners)
    for task in TASKS
    for field, owners in [
        ("input", "custom"),
        ("input_content", "custom"),
        ("document", "textract"),
        ("feature_types", "textract"),
        ("image", "rekognition"),
        ("min_confidence", "rekognition"),
        ("version", "textract and rekognition"),
    ]
    if task.value not in owners
]


@pytest.mark.parametrize(("task", "field", "owners"), FOREIGN)
async def test_fields_of_another_task_type_are_refused(
    task: TaskType, field: str, owners: str
) -> None:
    entry = await invalid(good(task, "a", **{field: "x"}), task)
    assert entry.reason == (
        f"field '{field}' belongs to {owners} tasks; this job runs {task.value} tasks"
    )
    assert entry.id == "a"


# -- reasons never quote the line ------------------------------------------------------------


def secret_lines(task: TaskType) -> list[bytes]:
    """Broken lines of every kind, each with the secret in its fields."""
    s = SECRET
    objs: list[dict[str, Any]] = [
        {"id": s, "input": {"card": s}, "document": s, "image": s},
        {"id": "x" * 1001 + s},
        {"id": "dup", **BODY[task], "note": s},
        {"id": "dup", **BODY[task], "note": s},
        {"id": 1, "name": s},
        {"id": "n1", **BODY[task], "name": s},
        {"id": "n2", **BODY[task], "content_classifiers": [s]},
        {"id": "n3", **BODY[task], "content_classifiers": s},
        {"id": "c1", "input": s, "input_content": s},
        {"id": "c2", "input_content": s},
        {"id": "c3", "input_content": [s]},
        {"id": "c4", "input": "x" * MAX_INPUT_CONTENT_CHARS + s},
        {"id": "t1", "document": s, "image": s},
        {"id": "t2", "document": "s3://" + s + "/k", "image": "s3://" + s + "/k"},
        {"id": "t3", "document": "s3://bucket/" + s * 100, "image": "s3://bucket/" + s * 100},
        {"id": "t4", **BODY[task], "version": [s]},
        {"id": "t5", **BODY[task], "feature_types": [s], "min_confidence": s},
        {"id": "t6", **BODY[task], "feature_types": s},
    ]
    raw = [orjson.dumps(o) for o in objs]
    secret = s.encode()
    raw += [
        b'{"id": "' + secret + b'", "input": ',
        b"[" + orjson.dumps(s) + b"]",
        orjson.dumps(s),
        b'{"id": "' + secret + b'\xff"}',
        secret,
    ]
    return raw


@pytest.mark.parametrize("task", TASKS)
async def test_no_reason_quotes_the_line(task: TaskType) -> None:
    lines = secret_lines(task)
    entries = await read(jsonl(*lines), task)
    assert len(entries) == len(lines)
    bad = [e for e in entries if isinstance(e, Invalid)]
    assert len(bad) >= len(lines) - 1
    for entry in bad:
        assert SECRET not in entry.reason
        assert "4111" not in entry.reason and "Jane" not in entry.reason


async def test_no_reason_quotes_a_csv_row() -> None:
    s = SECRET
    rows = [
        ["id", "input", "document", "min_confidence", "feature_types", "name"],
        [s, s, "", "", "", ""],
        ["a", '{"x": 1}', s, "", "", ""],
        ["b", "", "", s, "", ""],
        ["c", '{"x": 1}', "", "", "", s],
        ["d", '{"x": 1}', "", "", s, ""],
        [s, s],
    ]
    data = "\n".join(",".join(f'"{c}"' for c in row) for row in rows).encode()
    entries = await read(data, TaskType.CUSTOM, format="csv")
    assert len(entries) == len(rows) - 1
    for entry in entries:
        assert isinstance(entry, Invalid) and SECRET not in entry.reason


# -- CSV -------------------------------------------------------------------------------------


CSV_ROWS = {
    TaskType.CUSTOM: "id,input,input_content,name,owner\n"
    'a,"{""text"": ""hi""}",,,me\n'
    'b,,"{ ""raw"": 1 }",loop-b,me\n',
    TaskType.TEXTRACT: "id,document,version,feature_types,content_classifiers\n"
    "a,s3://scans/a.png,,FORMS|TABLES,FreeOfAdultContent\n"
    'b,s3://scans/b.png,v2,"LAYOUT, QUERIES",\n',
    TaskType.REKOGNITION: "id,image,min_confidence,content_classifiers\n"
    "a,s3://uploads/a.jpg,70,FreeOfAdultContent|FreeOfPersonallyIdentifiableInformation\n"
    "b,s3://uploads/b.jpg,,\n",
}
CSV_ITEMS = {
    TaskType.CUSTOM: [
        Item("a", 2, input_content='{"text":"hi"}'),
        Item("b", 3, input_content='{ "raw": 1 }', name="loop-b"),
    ],
    TaskType.TEXTRACT: [
        Item(
            "a",
            2,
            s3=S3Ref("scans", "a.png"),
            feature_types=("FORMS", "TABLES"),
            content_classifiers=("FreeOfAdultContent",),
        ),
        Item("b", 3, s3=S3Ref("scans", "b.png", "v2"), feature_types=("LAYOUT", "QUERIES")),
    ],
    TaskType.REKOGNITION: [
        Item(
            "a",
            2,
            s3=S3Ref("uploads", "a.jpg"),
            min_confidence=70.0,
            content_classifiers=(
                "FreeOfAdultContent",
                "FreeOfPersonallyIdentifiableInformation",
            ),
        ),
        Item("b", 3, s3=S3Ref("uploads", "b.jpg")),
    ],
}


@pytest.mark.parametrize("task", TASKS)
async def test_csv_rows_become_items(task: TaskType, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(CSV_ROWS[task].encode())
    assert await collect(str(path), task) == CSV_ITEMS[task]


@pytest.mark.parametrize("task", TASKS)
async def test_csv_gz_and_format_override(task: TaskType, tmp_path: Path) -> None:
    path = tmp_path / "M.CSV.GZ"
    path.write_bytes(gzip.compress(CSV_ROWS[task].encode()))
    assert await collect(str(path), task) == CSV_ITEMS[task]
    other = tmp_path / "rows.txt"
    other.write_bytes(CSV_ROWS[task].encode())
    assert await collect(str(other), task, format="csv") == CSV_ITEMS[task]
    assert await read(CSV_ROWS[task].encode(), task, format="csv") == CSV_ITEMS[task]


async def test_jsonl_format_override_for_a_csv_name(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(jsonl(good(TaskType.CUSTOM, "a")))
    entries = await collect(str(path), TaskType.CUSTOM, format="jsonl")
    assert [type(e) for e in entries] == [Item]


async def test_csv_header_needs_an_id_column() -> None:
    with pytest.raises(ManifestError, match="no 'id' column") as caught:
        await read(b"identifier,input\nx,1\n", TaskType.CUSTOM, format="csv")
    assert "on stdin" in str(caught.value)
    with pytest.raises(ManifestError, match="column 'id' appears 2 times"):
        await read(b"id,input,ID\nx,1,y\n", TaskType.CUSTOM, format="csv")


async def test_csv_header_names_ignore_case_spaces_and_a_bom() -> None:
    data = "\ufeff ID , Input ,notes\nx,1,anything\n".encode()
    entries = await read(data, TaskType.CUSTOM, format="csv")
    assert entries == [Item("x", 2, input_content="1")]


@pytest.mark.parametrize("task", TASKS)
async def test_csv_rows_with_the_wrong_number_of_cells(task: TaskType) -> None:
    header, first = CSV_ROWS[task].split("\n")[:2]
    data = f"{header}\n{first}\nshort,row\n{first.replace('a,', 'c,', 1)},extra\n{first}\n"
    entries = await read(data.encode(), task, format="csv")
    width = header.count(",") + 1
    assert isinstance(entries[0], Item)
    assert entries[1] == Invalid(3, f"row has 2 columns, header has {width}")
    assert entries[2] == Invalid(4, f"row has {width + 1} columns, header has {width}")
    assert entries[3] == Invalid(5, "duplicate id; first seen on line 2", "a")


async def test_csv_cells_and_line_numbers() -> None:
    data = (
        b"id,input,input_content,document,min_confidence,feature_types\r\n"
        b"\r\n"  # a blank line: skipped, but counted
        b'a,"{""multi"":\r\n""line""}",,,,\r\n'  # a record over two lines starts on line 3
        b"b,not json,,,,\r\n"
        b'c,,"{}",,,\r\n'
        b"d,,,s3://x/y,,\r\n"
        b'e,"1",,,,\r\n'
        b"f,,,,,\r\n"
        b"\xff,1,,,,\r\n"
        b"g,1,,,,"
    )
    entries = await read(data, TaskType.CUSTOM, format="csv")
    assert entries == [
        Item("a", 3, input_content='{"multi":"line"}'),
        Invalid(5, "field 'input' is not valid JSON", "b"),
        Item("c", 6, input_content="{}"),
        Invalid(7, "field 'document' belongs to textract tasks; this job runs custom tasks", "d"),
        Item("e", 8, input_content="1"),
        Invalid(9, "needs field 'input' or 'input_content'", "f"),
        Invalid(10, "line is not valid UTF-8 (byte 1)"),
        Item("g", 11, input_content="1"),
    ]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("abc", "field 'min_confidence' must be a number from 0 to 100"),
        ("101", "field 'min_confidence' must be a number from 0 to 100"),
        ("nan", "field 'min_confidence' must be a number from 0 to 100"),
    ],
)
async def test_csv_min_confidence(cell: str, reason: str) -> None:
    data = f"id,image,min_confidence\na,s3://uploads/a.jpg,{cell}\nb,s3://uploads/b.jpg, 12.5 \n"
    entries = await read(data.encode(), TaskType.REKOGNITION, format="csv")
    assert entries[0] == Invalid(2, reason, "a")
    assert isinstance(entries[1], Item) and entries[1].min_confidence == 12.5


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("FORMS||TABLES", "field 'feature_types' has an empty entry"),
        ("FORMS|forms", "field 'feature_types' holds an unknown value"),
        ("FORMS,FORMS", "field 'feature_types' repeats a value"),
    ],
)
async def test_csv_feature_types(cell: str, reason: str) -> None:
    data = f'id,document,feature_types\na,s3://uploads/a.png,"{cell}"\n'
    entries = await read(data.encode(), TaskType.TEXTRACT, format="csv")
    assert len(entries) == 1 and isinstance(entries[0], Invalid)
    assert entries[0].line == 2 and entries[0].id == "a" and reason in entries[0].reason


async def test_csv_records_may_span_chunks_and_batches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    limits(monkeypatch, chunk=7, batch=2)
    text = "x" * 30
    rows = ["id,input,note"]
    for i in range(20):
        note = "\n".join([f"line {j}" for j in range(i % 4)])
        rows.append(f'r{i},"{{""t"": ""{text}""}}","{note}"')
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    entries = await collect(str(path), TaskType.CUSTOM)
    assert [e.id for e in entries] == [f"r{i}" for i in range(20)]
    assert all(isinstance(e, Item) for e in entries)
    expected, line = [], 2
    for i in range(20):
        expected.append(line)
        line += max(1, i % 4)
    assert [e.line for e in entries] == expected


async def test_csv_an_unclosed_quote_stops_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    limits(monkeypatch, chunk=64, max_line=200)
    data = b'id,input\na,1\nb,"{\n' + b"c,1\n" * 100
    entries: list[Item | Invalid] = []
    with pytest.raises(ManifestError, match="row starting on line 3 does not end"):
        async for entry in read_manifest(
            "-", TaskType.CUSTOM, stdin=io.BytesIO(data), format="csv"
        ):
            entries.append(entry)
    assert entries == [Item("a", 2, input_content="1")]


async def test_csv_an_unclosed_quote_at_the_end() -> None:
    entries = await read(b'id,input\na,1\nb,"{\nc,1\n', TaskType.CUSTOM, format="csv")
    assert entries[0] == Item("a", 2, input_content="1")
    assert len(entries) == 2 and isinstance(entries[1], Invalid) and entries[1].line == 3


async def test_csv_cells_may_hold_a_whole_input() -> None:
    text = orjson.dumps({"t": "x" * (MAX_INPUT_CONTENT_CHARS - 10)}).decode()
    cell = text.replace('"', '""')
    data = f'id,input_content\na,"{cell}"\n'.encode()
    entries = await read(data, TaskType.CUSTOM, format="csv")
    assert entries == [Item("a", 2, input_content=text)]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"id,input\n", b"id,input\n\n \n"])
async def test_csv_without_rows_yields_nothing(data: bytes) -> None:
    assert await read(data, TaskType.CUSTOM, format="csv") == []


# -- sources ---------------------------------------------------------------------------------


def mixed(task: TaskType) -> tuple[bytes, list[tuple[type, int]]]:
    data = jsonl(good(task, "a"), b"", b"junk", good(task, "b"))
    return data, [(Item, 1), (Invalid, 3), (Item, 4)]


def shape(entries: list[Item | Invalid]) -> list[tuple[type, int]]:
    return [(type(e), e.line) for e in entries]


@pytest.mark.parametrize("task", TASKS)
async def test_local_files_plain_and_gzip(task: TaskType, tmp_path: Path) -> None:
    data, expected = mixed(task)
    plain = tmp_path / "m.jsonl"
    plain.write_bytes(data)
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(data))
    unnamed = tmp_path / "packed.jsonl"  # gzip is recognised by its magic bytes too
    unnamed.write_bytes(gzip.compress(data))
    for path in (plain, packed, unnamed):
        assert shape(await collect(str(path), task)) == expected


async def test_multi_member_gzip_and_padding(tmp_path: Path) -> None:
    task = TaskType.CUSTOM
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(
        gzip.compress(jsonl(good(task, "a"))[:-3])
        + gzip.compress(jsonl(good(task, "a"))[-3:] + jsonl(good(task, "b")))
        + b"\x00" * 10
    )
    assert shape(await collect(str(path), task)) == [(Item, 1), (Item, 2)]


async def test_gzip_is_inflated_in_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    limits(monkeypatch, chunk=4096)
    line = jsonl(good(TaskType.CUSTOM, "a"))
    data = gzip.compress(line + b"\n" * 5_000_000 + b'{"id": "b", "input": 2}')
    seen: list[int] = []
    real = _lines.LineSplitter.feed

    def spy(self: Any, chunk: bytes) -> list[bytes]:
        seen.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(_lines.LineSplitter, "feed", spy)
    entries = await read(data, TaskType.CUSTOM)
    assert shape(entries) == [(Item, 1), (Item, 5_000_002)]
    assert max(seen) <= 4096


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("m.jsonl.gz", b'{"id": "a"}\n', r"named \.gz but not gzip"),
        ("m.jsonl.gz", gzip.compress(b'{"id": "a"}\n' * 100)[:-12], "gzip stream is truncated"),
        ("m.jsonl", gzip.compress(b'{"id": "a"}\n')[:10] + b"garbage!" * 4, "not a valid gzip"),
        ("m.jsonl.gz", gzip.compress(b"{}\n") + b"trailing", "not a valid gzip"),
    ],
)
async def test_broken_gzip_is_a_manifest_error(
    tmp_path: Path, name: str, data: bytes, match: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ManifestError, match=match) as caught:
        await collect(str(path), TaskType.CUSTOM)
    assert str(path) in str(caught.value)


async def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ManifestError, match="No such file") as caught:
        await collect(str(missing), TaskType.CUSTOM)
    assert str(missing) in str(caught.value)
    with pytest.raises(ManifestError, match="cannot open manifest"):
        await collect(str(tmp_path), TaskType.CUSTOM)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
async def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"{}\n")
    path.chmod(0)
    with pytest.raises(ManifestError, match="Permission denied"):
        await collect(str(path), TaskType.CUSTOM)


@pytest.mark.parametrize("data", [b"", b"\n", b"  \n\n\r\n", gzip.compress(b"")])
async def test_an_empty_manifest_yields_nothing(tmp_path: Path, data: bytes) -> None:
    assert await read(data, TaskType.CUSTOM) == []
    path = tmp_path / "m.jsonl.gz" if data[:2] == b"\x1f\x8b" else tmp_path / "m.jsonl"
    path.write_bytes(data)
    assert await collect(str(path), TaskType.CUSTOM) == []


@pytest.mark.parametrize("task", TASKS)
async def test_stdin_plain_and_gzip(task: TaskType) -> None:
    data, expected = mixed(task)
    assert shape(await read(data, task)) == expected
    assert shape(await read(gzip.compress(data), task)) == expected


async def test_stdin_defaults_to_the_process_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data, expected = mixed(TaskType.CUSTOM)

    class FakeStdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", FakeStdin)
    assert shape(await collect("-", TaskType.CUSTOM)) == expected


async def test_lines_longer_than_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits(monkeypatch, chunk=16, max_line=100)
    task = TaskType.CUSTOM
    long = orjson.dumps({"id": "long", "input": "x" * 200})
    data = jsonl(good(task, "a"), long, good(task, "b"), long)
    for payload in (data, data[:-1]):  # the last line with and without its newline
        entries = await read(payload, task)
        assert shape(entries) == [(Item, 1), (Invalid, 2), (Item, 3), (Invalid, 4)]
        assert entries[1].id is None and "longer than" in entries[1].reason
    csv_data = b'id,input\na,1\nb,"' + b"x" * 300 + b'"\nc,2\n'
    entries = await read(csv_data, task, format="csv")
    assert shape(entries) == [(Item, 2), (Invalid, 3), (Item, 4)]


async def test_lines_and_chunks_of_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TaskType.TEXTRACT
    data = jsonl(*[good(task, f"i{i}") for i in range(50)])
    for size in (1, 2, 3, 64, 1000):
        limits(monkeypatch, chunk=size, batch=3)
        for payload in (data, gzip.compress(data)):
            entries = await read(payload, task)
            assert [e.line for e in entries] == list(range(1, 51))
            assert all(isinstance(e, Item) for e in entries)


async def test_an_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown manifest format"):
        await read(b"{}\n", TaskType.CUSTOM, format="xml")


async def test_closing_early_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(jsonl(*[good(TaskType.CUSTOM, f"i{i}") for i in range(10)]))
    entries = read_manifest(str(path), TaskType.CUSTOM)
    assert isinstance(await entries.__anext__(), Item)
    await entries.aclose()  # type: ignore[attr-defined]
    if os.path.isdir("/proc/self/fd"):
        targets = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert str(path.resolve()) not in targets


# -- S3 --------------------------------------------------------------------------------------


@pytest.fixture
async def bucket(s3: Any) -> str:
    name = f"manifests-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("task", TASKS)
async def test_s3_objects_plain_and_gzip(s3: Any, bucket: str, task: TaskType) -> None:
    data, expected = mixed(task)
    await s3.put_object(Bucket=bucket, Key="in/m.jsonl", Body=data)
    await s3.put_object(Bucket=bucket, Key="in/m.jsonl.gz", Body=gzip.compress(data))
    await s3.put_object(Bucket=bucket, Key="in/m.csv", Body=CSV_ROWS[task].encode())
    await s3.put_object(
        Bucket=bucket, Key="in/m.csv.gz", Body=gzip.compress(CSV_ROWS[task].encode())
    )
    for key in ("in/m.jsonl", "in/m.jsonl.gz"):
        entries = await collect(f"s3://{bucket}/{key}", task, s3_client=s3)
        assert shape(entries) == expected
    for key in ("in/m.csv", "in/m.csv.gz"):
        entries = await collect(f"s3://{bucket}/{key}", task, s3_client=s3)
        assert entries == CSV_ITEMS[task]


async def test_a_large_s3_object_is_streamed(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(monkeypatch, chunk=64 * 1024)
    task = TaskType.TEXTRACT
    data = jsonl(*[good(task, f"item-{i:06d}") for i in range(20_000)])
    await s3.put_object(Bucket=bucket, Key="big.jsonl.gz", Body=gzip.compress(data))
    reads: list[int] = []
    real = _lines.LineSplitter.feed

    def spy(self: Any, chunk: bytes) -> list[bytes]:
        reads.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(_lines.LineSplitter, "feed", spy)
    entries = await collect(f"s3://{bucket}/big.jsonl.gz", task, s3_client=s3)
    assert [e.line for e in entries] == list(range(1, 20_001))
    assert len(reads) > 1 and max(reads) <= 64 * 1024


async def test_s3_errors_are_manifest_errors(s3: Any, bucket: str) -> None:
    with pytest.raises(ManifestError, match="NoSuchKey") as caught:
        await collect(f"s3://{bucket}/missing.jsonl", TaskType.CUSTOM, s3_client=s3)
    assert f"s3://{bucket}/missing.jsonl" in str(caught.value)
    with pytest.raises(ManifestError, match="NoSuchBucket"):
        await collect("s3://no-such-bucket-here/m.jsonl", TaskType.CUSTOM, s3_client=s3)
    with pytest.raises(ManifestError, match="no S3 client"):
        await collect(f"s3://{bucket}/m.jsonl", TaskType.CUSTOM)
    with pytest.raises(ManifestError, match="not an s3://bucket/key URI"):
        await collect(f"s3://{bucket}", TaskType.CUSTOM, s3_client=s3)
    await s3.put_object(Bucket=bucket, Key="fake.jsonl.gz", Body=b'{"id": "a"}\n')
    with pytest.raises(ManifestError, match=r"named \.gz but not gzip"):
        await collect(f"s3://{bucket}/fake.jsonl.gz", TaskType.CUSTOM, s3_client=s3)


async def test_s3_access_denied_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    class Denied:
        async def get_object(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(ManifestError, match="access denied") as caught:
        await collect("s3://b-b-b/m.jsonl", TaskType.CUSTOM, s3_client=Denied())
    assert "s3://b-b-b/m.jsonl" in str(caught.value)


# -- properties ------------------------------------------------------------------------------


WRONG_BODY = {
    TaskType.CUSTOM: {"input_content": "not json"},
    TaskType.TEXTRACT: {"document": "http://x/y"},
    TaskType.REKOGNITION: {"image": "s3://UPPER/k"},
}
BROKEN = [b"{not json", b"[1]", b'{"id": "\xff\xfe"}', b'{"input": 1}']

#: abstract lines, rendered per task type in the test: (kind, number, junk bytes)
Spec = tuple[str, int, bytes]
SPECS = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 30), st.just(b"")),  # small range: duplicates
    st.tuples(st.just("good"), st.integers(0, 10**9), st.just(b"")),
    st.tuples(st.just("bad"), st.integers(0, len(BROKEN)), st.just(b"")),
    st.tuples(st.just("blank"), st.integers(0, 3), st.just(b"")),
    st.tuples(
        st.just("junk"),
        st.just(0),
        # (a manifest that starts with gzip's magic bytes is read as gzip, and a byte order
        # mark at its start is dropped)
        st.binary(max_size=30).filter(
            lambda b: (
                b"\n" not in b
                and b.strip() != b""
                and not b.startswith((b"\x1f\x8b", b"\xef\xbb\xbf"))
            )
        ),
    ),
)


def render(spec: Spec, task: TaskType) -> bytes:
    kind, n, junk = spec
    if kind == "good":
        return orjson.dumps(good(task, f"g{n}"))
    if kind == "bad":
        return BROKEN[n] if n < len(BROKEN) else orjson.dumps({"id": "bad", **WRONG_BODY[task]})
    if kind == "blank":
        return [b"", b"  ", b"\t", b"\r"][n]
    return junk


@pytest.mark.parametrize("task", TASKS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(SPECS, max_size=40),
    chunk=st.sampled_from([1, 5, 64, 1 << 20]),
    batch=st.sampled_from([1, 3, 4096]),
    packed=st.booleans(),
)
async def test_every_non_blank_line_yields_one_entry_in_order(
    task: TaskType, specs: list[Spec], chunk: int, batch: int, packed: bool
) -> None:
    lines = [render(spec, task) for spec in specs]
    raw = b"\n".join(lines)
    old = _sources.CHUNK_BYTES, _manifest.BATCH_LINES
    setattr(_sources, "CHUNK_BYTES", chunk)  # noqa: B010 - the names are Final to the code
    setattr(_manifest, "BATCH_LINES", batch)  # noqa: B010
    try:
        entries = await read(gzip.compress(raw) if packed else raw, task)
    finally:
        setattr(_sources, "CHUNK_BYTES", old[0])  # noqa: B010
        setattr(_manifest, "BATCH_LINES", old[1])  # noqa: B010
    expected = [n for n, spec in enumerate(specs, 1) if spec[0] != "blank"]
    assert [e.line for e in entries] == expected
    seen: dict[bytes, int] = {}
    for entry, n in zip(entries, expected, strict=True):
        kind = specs[n - 1][0]
        if kind == "good":
            first = seen.setdefault(lines[n - 1], n)
            if first == n:
                assert isinstance(entry, Item) and entry.id is not None, entry
            else:
                assert entry == Invalid(n, f"duplicate id; first seen on line {first}", entry.id)
        elif kind == "bad":
            assert isinstance(entry, Invalid)
            if entry.id == "bad":  # the same id on several broken lines: duplicates
                seen_bad = seen.setdefault(b"bad", n)
                assert (seen_bad == n) == (not entry.reason.startswith("duplicate id"))
        else:
            assert isinstance(entry, Invalid)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=8), max_size=3000))
def test_the_duplicate_table_agrees_with_a_dict(ids: list[str]) -> None:
    table = IdTable()  # it grows many times
    reference: dict[str, int] = {}
    for line, item_id in enumerate(ids, 1):
        assert table.setdefault(digest(item_id), line) == reference.setdefault(item_id, line)
    assert len(table) == len(reference)


def test_a_million_ids_fit_in_24_mib() -> None:
    table = IdTable()
    table.reserve(1_000_000)
    assert table.nbytes <= 24 * 2**20


def test_fast_item_construction_builds_equal_frozen_items() -> None:
    ref = _build.make_ref("b", "k", "v")
    assert ref == S3Ref("b", "k", "v") and type(ref) is S3Ref
    fast = _build.make_item("a", 3, None, ref, ("FORMS",), 2.0, "n", ())
    slow = Item("a", 3, None, ref, ("FORMS",), 2.0, "n", ())
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert type(fast) is Item
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "b"  # type: ignore[misc]


def test_the_slot_builders_are_used_only_for_the_fields_they_know() -> None:
    assert _build.make_item is not Item and _build.make_ref is not S3Ref  # this model: fast

    @dataclasses.dataclass(frozen=True, slots=True)
    class Other:
        a: int
        b: int = 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    assert _build._slots_match(Other, ("a", "b"))
    assert not _build._slots_match(Other, ("a",))  # a changed model
    assert not _build._slots_match(Checked, ("a",))  # code at construction


_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(Item))


def limits(
    monkeypatch: pytest.MonkeyPatch,
    *,
    chunk: int | None = None,
    batch: int | None = None,
    max_line: int | None = None,
) -> None:
    """Shrink the reader's sizes, wherever the manifest modules keep them."""
    if chunk is not None:
        monkeypatch.setattr(_sources, "CHUNK_BYTES", chunk)
    if batch is not None:
        monkeypatch.setattr(_manifest, "BATCH_LINES", batch)
    if max_line is not None:
        for module in (_lines, _csv, _rules):
            monkeypatch.setattr(module, "MAX_LINE_BYTES", max_line)


# -- the textract and rekognition fast path ------------------------------------------------

ABSENT = object()
GOOD_BUCKETS = st.sampled_from(["scans", "my.bucket-1", "b" * 63, "abc", "0-9.a"])
BAD_BUCKETS = st.sampled_from(
    ["ab", "b" * 64, "", "Scans", "a_b", "-ab", "ab.", "my..b", "192.168.1.1", "xn--ab"]
)
KEYS = st.one_of(
    st.text(min_size=1, max_size=6),
    st.sampled_from(["", "a/b//c", "k" * 256, "k" * 257, "é" * 256, "é" * 257, "😀" * 257]),
    st.sampled_from(["k" * 1024, "k" * 1025, "é" * 512, "é" * 513, "\ud800" * 342]),
)
OTHER_URIS = st.one_of(
    st.builds(
        lambda bucket, key: f"s3://{bucket}/{key}",
        st.one_of(BAD_BUCKETS, st.text(alphabet="abz09.-_/A", max_size=8)),
        KEYS,
    ),
    st.builds(lambda bucket: f"s3://{bucket}", GOOD_BUCKETS),
    st.text(alphabet="s3:/abk", max_size=12),
    st.sampled_from(["https://scans/a", "S3://scans/a", "s3:/scans/a", "s3:///a", " s3://scans/a"]),
    st.sampled_from([None, ABSENT, 3, ["s3://scans/a"]]),
)
#: other fields, valid or not: the fields a check reads, and one it ignores
FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "document",
            "feature_types",
            "name",
            "content_classifiers",
            "input",
            "input_content",
            "image",
            "min_confidence",
            "note",
        ]
    ),
    st.one_of(
        st.none(),
        st.sampled_from(
            [
                "v1",
                "",
                3,
                ["FORMS"],
                [],
                ["x"],
                "n-1",
                "Bad Name",
                ["FreeOfAdultContent"],
                50,
                "s3://scans/a",
            ]
        ),
    ),
    min_size=1,
    max_size=3,
)


#: the slow path of each task type with a fast path
SLOW = {TaskType.TEXTRACT: "_check_textract_slow", TaskType.REKOGNITION: "_check_rekognition_slow"}


def slow_path(task: TaskType, obj: dict[str, Any]) -> Item | Invalid:
    return getattr(_rules, SLOW[task])(obj, 5, "a")  # type: ignore[no-any-return]


@st.composite
def plain_lines(draw: st.DrawFn, task: TaskType) -> dict[str, Any]:
    """Lines for the checker of `task` (textract or rekognition), valid or not.

    Half of them name an object in a valid bucket, and half of them have no other field, so
    that the fast path's own case (both) comes up often.
    """
    good_uri = draw(st.booleans())
    uri: object = f"s3://{draw(GOOD_BUCKETS)}/{draw(KEYS)}" if good_uri else draw(OTHER_URIS)
    obj: dict[str, Any] = {"id": "a"} if draw(st.booleans()) else {"id": "a", **draw(FIELDS)}
    if uri is not ABSENT:
        obj[S3_FIELD[task]] = uri
    return obj


def fast_path_only(task: TaskType, obj: dict[str, Any]) -> Item | Invalid | None:
    """What the checker of `task` answers without its slow path (None where it would fall back)."""
    slow = getattr(_rules, SLOW[task])
    setattr(_rules, SLOW[task], lambda *args: None)
    try:
        return _rules.CHECKS[task](obj, 5, "a")
    finally:
        setattr(_rules, SLOW[task], slow)


@pytest.mark.parametrize("task", BUILTIN)
@settings(max_examples=1000, deadline=None)
@given(data=st.data(), warm=st.booleans())
def test_the_fast_path_agrees_with_the_slow_path(
    task: TaskType, data: st.DataObject, warm: bool
) -> None:
    obj = data.draw(plain_lines(task))
    if warm:
        slow_path(task, obj)  # the bucket's verdict is cached
    else:
        _rules._BUCKETS.clear()
    fast = fast_path_only(task, obj)
    slow = slow_path(task, obj)
    # the fast path accepts only what the slow path accepts, and builds the same item ...
    assert fast is None or (isinstance(slow, Item) and fast == slow)
    # ... and the checker as a whole answers as the slow path does, reasons included
    assert _rules.CHECKS[task](obj, 5, "a") == slow
    # ... and it does accept a line of only an id and a short key in a known bucket
    if warm and isinstance(slow, Item) and len(obj) == 2:
        assert slow.s3 is not None
        assert (fast == slow) == (len(slow.s3.key) <= 256)


@pytest.mark.parametrize("task", BUILTIN)
def test_a_plain_line_takes_the_fast_path(task: TaskType) -> None:
    obj = good(task, "a")
    uri = obj[S3_FIELD[task]].removeprefix("s3://")
    bucket, key = uri.split("/", 1)
    item = Item("a", 5, s3=S3Ref(bucket, key))
    slow_path(task, obj)
    assert fast_path_only(task, obj) == item
    assert fast_path_only(task, {**obj, "note": "mine"}) == item  # a field no check reads
    foreign = "image" if task is TaskType.TEXTRACT else "document"
    extras: list[dict[str, Any]] = [
        {"version": None},
        {"feature_types": ["FORMS"]},
        {"min_confidence": 50},
        {"name": "n"},
        {"content_classifiers": []},
        {foreign: 1},
    ]
    for extra in extras:
        assert fast_path_only(task, {**obj, **extra}) is None
