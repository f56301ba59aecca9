"""Building items fast: a frozen dataclass filled slot by slot.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
about as much as the rest of a manifest line's checks; a dry run builds a million items.
`make_item` makes the same instance by writing the slots through their descriptors, about
twice as fast, with no generated code.  When the model's fields are not what this module
expects (the model changed), the classes themselves are used: slower, never wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from .._models import Item, S3Ref

_ITEM_FIELDS: Final = (
    "id",
    "line",
    "input_content",
    "s3",
    "feature_types",
    "min_confidence",
    "name",
    "content_classifiers",
    "region",
)


def _slots_match(cls: type[Any], names: tuple[str, ...]) -> bool:
    """Whether `cls` is a slotted dataclass with exactly these fields and no set-up code."""
    fields = dataclasses.fields(cls)
    return (
        tuple(f.name for f in fields) == names
        and tuple(getattr(cls, "__slots__", ())) == names
        and all(f.init for f in fields)
        and not hasattr(cls, "__post_init__")
    )


if _slots_match(Item, _ITEM_FIELDS) and _slots_match(S3Ref, ("bucket", "key", "version")):
    _new = object.__new__
    (_ID, _LINE, _CONTENT, _S3, _FEATURES, _CONFIDENCE, _NAME, _CLASSIFIERS, _REGION) = (
        vars(Item)[name].__set__ for name in _ITEM_FIELDS
    )
    _BUCKET, _KEY, _VERSION = (vars(S3Ref)[name].__set__ for name in ("bucket", "key", "version"))

    def make_item(
        item_id: str,
        line: int,
        content: str | None,
        s3: S3Ref | None,
        features: tuple[str, ...] | None,
        confidence: float | None,
        name: str | None,
        classifiers: tuple[str, ...] | None,
        region: str | None = None,
    ) -> Item:
        """``Item(...)`` with its fields in order, built by filling its slots."""
        item = _new(Item)
        _ID(item, item_id)
        _LINE(item, line)
        _CONTENT(item, content)
        _S3(item, s3)
        _FEATURES(item, features)
        _CONFIDENCE(item, confidence)
        _NAME(item, name)
        _CLASSIFIERS(item, classifiers)
        _REGION(item, region)
        return item

    def make_ref(bucket: str, key: str, version: str | None) -> S3Ref:
        """``S3Ref(bucket, key, version)``, built by filling its slots."""
        ref = _new(S3Ref)
        _BUCKET(ref, bucket)
        _KEY(ref, key)
        _VERSION(ref, version)
        return ref

else:  # pragma: no cover - the models changed: the classes themselves, slower, never wrong
    make_item = Item  # type: ignore[assignment]
    make_ref = S3Ref
