"""What makes a manifest line an item, per task type: the field rules and their checks.

A line that cannot become an item is not an error but an `Invalid` with a short reason for
the person who fixes the manifest.  Reasons may name fields and types but never quote the
line's content or a field's value: manifests often hold personal data, and reasons end up in
ledgers and logs.

Field rules (JSON Lines; CSV cells are converted to the same values first):

* ``id``: required, a non-empty string of at most 1,000 characters, unique in the manifest
  (the second occurrence of an id is invalid).
* custom tasks: exactly one of ``input`` (any JSON value, sent as compact JSON) and
  ``input_content`` (a string holding a JSON document, sent verbatim); at most
  `MAX_INPUT_CONTENT_CHARS` characters either way; optional ``region`` (an AWS region
  name: the region of the flow definition that reviews the item, in a job of several).
* textract: ``document``, an ``s3://bucket/key`` URI; optional ``version`` and
  ``feature_types`` (a non-empty list of distinct Textract feature types).
* rekognition: ``image``, an ``s3://bucket/key`` URI; optional ``version`` and
  ``min_confidence`` (a number from 0 to 100).
* every task: optional ``name`` (an explicit loop name) and ``content_classifiers`` (a list
  of distinct A2I content classifiers; an empty list means none for this item).
* A field of another task type is refused (it would be silently dropped otherwise); any other
  field is ignored, so that a manifest can carry its owner's own columns.  A JSON ``null``
  counts as an absent field, as does an empty CSV cell.

The checks run once per line of a manifest of millions, so they are plain inline code, and
items are built by `make_item` (see `_build`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from .._models import (
    CONTENT_CLASSIFIERS,
    MAX_INPUT_CONTENT_CHARS,
    TEXTRACT_FEATURE_TYPES,
    Invalid,
    Item,
    S3Ref,
    TaskType,
)
from .._naming import name_problem
from .._regions import REGION_NAME
from ._build import make_item, make_ref
from ._lines import MAX_LINE_BYTES, TOO_LONG

#: the longest id a manifest may use (the ledger and the logs carry it)
MAX_ID_CHARS: Final = 1000
#: S3 limits on bucket names and object keys
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_MAX_KEY_BYTES = 1024
#: a key of at most this many characters is within _MAX_KEY_BYTES whatever they are
_SHORT_KEY_CHARS = _MAX_KEY_BYTES // 4

#: which task type each task-specific field belongs to
FIELD_TASKS: Final[dict[str, tuple[TaskType, ...]]] = {
    "input": (TaskType.CUSTOM,),
    "input_content": (TaskType.CUSTOM,),
    "document": (TaskType.TEXTRACT,),
    "feature_types": (TaskType.TEXTRACT,),
    "image": (TaskType.REKOGNITION,),
    "min_confidence": (TaskType.REKOGNITION,),
    "version": (TaskType.TEXTRACT, TaskType.REKOGNITION),
    "region": (TaskType.CUSTOM,),  # a built-in item's region is its bucket's
}
FOREIGN: Final[dict[TaskType, frozenset[str]]] = {
    task: frozenset(f for f, owners in FIELD_TASKS.items() if task not in owners)
    for task in TaskType
}


# -- checks --------------------------------------------------------------------------------

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def kind(value: object) -> str:
    """A JSON value's type, for reasons (never the value itself)."""
    return _JSON_TYPES.get(type(value), "a value")


def id_problem(value: object) -> str:
    if value is None:
        return "missing field 'id'"
    if type(value) is not str:
        return f"field 'id' must be a string, not {kind(value)}"
    if not value:
        return "field 'id' is empty"
    return f"field 'id' is {len(value)} characters long; the limit is {MAX_ID_CHARS}"


def unparsable(raw: bytes, exc: orjson.JSONDecodeError) -> str | None:
    """Why a line is not JSON; None for a blank line (skipped)."""
    if raw is TOO_LONG:
        return f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
    if not raw or raw.isspace():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"line is not valid UTF-8 (byte {bad.start + 1})"
    return f"line is not valid JSON (column {exc.colno})"


def _s3_ref(value: object, field: str, version: object) -> S3Ref | str:
    """The S3 object a field names, or why it names none."""
    if type(value) is not str:
        return f"field '{field}' must be a string, not {kind(value)}"
    parts = value.split("/", 3)  # "s3:", "", bucket, key
    if len(parts) != 4 or parts[0] != "s3:" or parts[1] or not parts[3]:
        if value.startswith("s3://"):
            return f"field '{field}' has no object key (s3://bucket/key)"
        return f"field '{field}' must be an S3 URI (s3://bucket/key)"
    bucket = parts[2]
    problem = _BUCKETS.get(bucket, "")
    if problem == "":
        problem = _bucket_problem(bucket)
        if len(_BUCKETS) < 4096:  # a manifest names few buckets; a broken one, many
            _BUCKETS[bucket] = problem
    if problem is not None:
        return f"field '{field}' names an invalid bucket: {problem}"
    key = parts[3]
    if len(key) > _SHORT_KEY_CHARS and len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        return f"field '{field}' has an object key longer than {_MAX_KEY_BYTES} bytes"
    if version is not None and (type(version) is not str or not version):
        return f"field 'version' must be a non-empty string, not {kind(version)}"
    return make_ref(bucket, key, version)


_BUCKETS: dict[str, str | None] = {}


def _bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not a valid S3 bucket name (general purpose buckets), or None."""
    if not 3 <= len(bucket) <= 63:
        return "a bucket name has 3-63 characters"
    if not _BUCKET_CHARS.issuperset(bucket):
        return "a bucket name holds only a-z, 0-9, '.' and '-'"
    if bucket[0] not in _ALNUM or bucket[-1] not in _ALNUM:
        return "a bucket name starts and ends with a letter or digit"
    if ".." in bucket:
        return "a bucket name has no two adjacent periods"
    parts = bucket.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return "a bucket name is not an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return "a bucket name has no reserved prefix or suffix"
    return None


def _choices(
    value: object,
    field: str,
    allowed: frozenset[str],
    empty_ok: bool,
    cache: dict[tuple[Any, ...], tuple[str, ...] | str],
) -> tuple[str, ...] | str:
    """`value` as a tuple of distinct strings from `allowed`, or why it is not one.

    Manifests repeat the same few lists on every line, so answers are cached by the list's
    contents (bounded), and equal lists share one tuple.
    """
    key: tuple[Any, ...] | None = None
    if type(value) is list:
        key = tuple(value)
        try:
            hit = cache.get(key)
        except TypeError:  # it holds a list or an object: not hashable, and not valid
            key, hit = None, None
        if hit is not None:
            return hit
    answer: tuple[str, ...] | str
    if type(value) is not list or not all(type(v) is str for v in value):
        answer = f"field '{field}' must be a list of strings, not {kind(value)}"
    elif not value and not empty_ok:
        answer = f"field '{field}' must not be empty"
    elif not allowed.issuperset(value):
        answer = f"field '{field}' holds an unknown value; allowed: {', '.join(sorted(allowed))}"
    elif len(set(value)) != len(value):
        answer = f"field '{field}' repeats a value"
    else:
        answer = tuple(value)
    if key is not None and len(cache) < 1024:
        cache[key] = answer
    return answer


_FEATURE_LISTS: dict[tuple[Any, ...], tuple[str, ...] | str] = {}
_CLASSIFIER_LISTS: dict[tuple[Any, ...], tuple[str, ...] | str] = {}


def foreign_field(obj: dict[str, Any], task: TaskType, line: int, item_id: str) -> Invalid | None:
    """An `Invalid` when the line sets a field of another task type."""
    for field in FIELD_TASKS:
        if task not in FIELD_TASKS[field] and obj.get(field) is not None:
            owners = " and ".join(t.value for t in FIELD_TASKS[field])
            return Invalid(
                line,
                f"field '{field}' belongs to {owners} tasks; this job runs {task.value} tasks",
                item_id,
            )
    return None


def _common(
    obj: dict[str, Any], line: int, item_id: str
) -> tuple[str | None, tuple[str, ...] | None, str | None] | Invalid:
    """The optional `name`, `content_classifiers` and (custom) `region` of a line."""
    name = obj.get("name")
    if name is not None:
        problem = name_problem(name)
        if problem is not None:
            return Invalid(line, f"field 'name': {problem}", item_id)
    region = obj.get("region")
    if region is not None and (type(region) is not str or not REGION_NAME.fullmatch(region)):
        got = "" if type(region) is str else f", not {kind(region)}"
        reason = f"field 'region' must be an AWS region name such as us-east-1{got}"
        return Invalid(line, reason, item_id)
    classifiers = obj.get("content_classifiers")
    if classifiers is None:
        return name, None, region
    checked = _choices(
        classifiers, "content_classifiers", CONTENT_CLASSIFIERS, True, _CLASSIFIER_LISTS
    )
    if isinstance(checked, str):
        return Invalid(line, checked, item_id)
    return name, checked, region


def _too_big(chars: int) -> str:
    return f"input content is {chars} characters long; the limit is {MAX_INPUT_CONTENT_CHARS}"


def _finish(
    obj: dict[str, Any],
    line: int,
    item_id: str,
    content: str | None,
    ref: S3Ref | None,
    features: tuple[str, ...] | None,
    confidence: float | None,
) -> Item | Invalid:
    """The item, once the fields every task type shares (name, classifiers) and a custom
    item's region are checked."""
    if "name" in obj or "content_classifiers" in obj or "region" in obj:
        common = _common(obj, line, item_id)
        if type(common) is Invalid:
            return common
        name, classifiers, region = common  # type: ignore[misc]
        return make_item(
            item_id, line, content, ref, features, confidence, name, classifiers, region
        )
    return make_item(item_id, line, content, ref, features, confidence, None, None)


def _check_custom(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    if not _FOREIGN_CUSTOM.isdisjoint(obj):
        wrong = foreign_field(obj, TaskType.CUSTOM, line, item_id)
        if wrong is not None:
            return wrong
    value = obj.get("input")
    text = obj.get("input_content")
    if value is not None:
        if text is not None:
            return Invalid(line, "has both 'input' and 'input_content'; give one", item_id)
        content = orjson.dumps(value).decode()
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            return Invalid(line, _too_big(len(content)), item_id)
    elif text is not None:
        if type(text) is not str:
            return Invalid(
                line, f"field 'input_content' must be a string, not {kind(text)}", item_id
            )
        if len(text) > MAX_INPUT_CONTENT_CHARS:
            return Invalid(line, _too_big(len(text)), item_id)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return Invalid(line, "field 'input_content' does not hold a JSON document", item_id)
        content = text
    else:
        return Invalid(line, "needs field 'input' or 'input_content'", item_id)
    return _finish(obj, line, item_id, content, None, None, None)


def _plain_ref(obj: dict[str, Any], field: str, slow_fields: frozenset[str]) -> S3Ref | None:
    """The object a plain line of a built-in task type names, or None: the common fast path.

    Most lines of a textract or rekognition manifest hold an ``id`` and an S3 URI in `field`
    (``document`` or ``image``) whose bucket earlier lines already used, and nothing else
    that the checks read.  Such a line's object is found here with a few string operations;
    for every other line, valid or not, the answer is None and the caller goes to its slow
    path, so that the answer (the same item, or the same reason) never depends on which path
    gave it.  The fast path accepts only what the slow path accepts, and builds the same
    object from it:

    * no field of `slow_fields` (every field a check reads but ``id`` and `field`) is
      present, not even as null: no field of another task type, no ``version``,
      ``feature_types``, ``min_confidence``, ``name`` or ``content_classifiers``;
    * `field` is a string ``s3://bucket/key`` with a non-empty key of at most a quarter of
      the key limit in characters (so at most the limit in UTF-8 bytes);
    * the bucket's name is in the cache of names that passed `_bucket_problem`.
    """
    uri = obj.get(field)
    if type(uri) is str and slow_fields.isdisjoint(obj):
        parts = uri.split("/", 3)  # "s3:", "", bucket, key
        if len(parts) == 4:
            scheme, empty, bucket, key = parts
            if (
                scheme == "s3:"
                and not empty
                and 0 < len(key) <= _SHORT_KEY_CHARS
                and _BUCKETS.get(bucket, "") is None
            ):
                return make_ref(bucket, key, None)
    return None


def _check_textract(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A textract line's item, or why it is invalid: `_plain_ref`, else the slow path."""
    ref = _plain_ref(obj, "document", _TEXTRACT_SLOW_FIELDS)
    if ref is not None:
        return make_item(item_id, line, None, ref, None, None, None, None)
    return _check_textract_slow(obj, line, item_id)


def _object_ref(
    obj: dict[str, Any], line: int, item_id: str, task: TaskType, field: str
) -> S3Ref | Invalid:
    """The S3 object a built-in task's line names in `field` (with its ``version``), or the
    first reason the line is invalid: a field of another task type, or a bad URI."""
    if not FOREIGN[task].isdisjoint(obj):
        wrong = foreign_field(obj, task, line, item_id)
        if wrong is not None:
            return wrong
    uri = obj.get(field)
    if uri is None:
        return Invalid(line, f"needs field '{field}' (s3://bucket/key)", item_id)
    ref = _s3_ref(uri, field, obj.get("version"))
    if isinstance(ref, str):
        return Invalid(line, ref, item_id)
    return ref


def _check_textract_slow(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A textract line's item, or the first reason it is invalid, checking every rule."""
    ref = _object_ref(obj, line, item_id, TaskType.TEXTRACT, "document")
    if isinstance(ref, Invalid):
        return ref
    features = obj.get("feature_types")
    if features is not None:
        features = _choices(
            features, "feature_types", TEXTRACT_FEATURE_TYPES, False, _FEATURE_LISTS
        )
        if isinstance(features, str):
            return Invalid(line, features, item_id)
    return _finish(obj, line, item_id, None, ref, features, None)


def _check_rekognition(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A rekognition line's item, or why it is invalid: `_plain_ref`, else the slow path."""
    ref = _plain_ref(obj, "image", _REKOGNITION_SLOW_FIELDS)
    if ref is not None:
        return make_item(item_id, line, None, ref, None, None, None, None)
    return _check_rekognition_slow(obj, line, item_id)


def _check_rekognition_slow(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A rekognition line's item, or the first reason it is invalid, checking every rule."""
    ref = _object_ref(obj, line, item_id, TaskType.REKOGNITION, "image")
    if isinstance(ref, Invalid):
        return ref
    confidence = obj.get("min_confidence")
    if confidence is not None:
        if type(confidence) not in (int, float) or not 0 <= confidence <= 100:
            return Invalid(line, "field 'min_confidence' must be a number from 0 to 100", item_id)
        confidence = float(confidence)
    return _finish(obj, line, item_id, None, ref, None, confidence)


_FOREIGN_CUSTOM = FOREIGN[TaskType.CUSTOM]
#: every field a check reads except ``id``
_CHECKED_FIELDS = frozenset(FIELD_TASKS) | {"name", "content_classifiers"}
#: the fields whose presence sends a line to `_check_textract_slow` or
#: `_check_rekognition_slow`: every field a check reads except ``id`` and the S3 URI's
_TEXTRACT_SLOW_FIELDS = _CHECKED_FIELDS - {"document"}
_REKOGNITION_SLOW_FIELDS = _CHECKED_FIELDS - {"image"}
CHECKS: dict[TaskType, Callable[[dict[str, Any], int, str], Item | Invalid]] = {
    TaskType.CUSTOM: _check_custom,
    TaskType.TEXTRACT: _check_textract,
    TaskType.REKOGNITION: _check_rekognition,
}
