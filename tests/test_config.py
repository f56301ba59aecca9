"""Settings: precedence of flags, environment, file and defaults, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from a2ibatch import ConfigError, TaskType
from a2ibatch._settings import check_endpoint, load_settings, parse_max_failures

ROOT = Path(__file__).resolve().parent.parent
FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/reviews"
REQUIRED = {"task": "custom", "flow_definition_arn": FLOW, "ledger": "l.jsonl"}


def test_defaults() -> None:
    s = load_settings(REQUIRED, environ={})
    assert s.task is TaskType.CUSTOM
    assert s.name_prefix == "a2ib"
    assert s.rate is None and s.concurrency is None
    assert s.feature_types == ("FORMS", "TABLES")
    assert s.ledger == Path("l.jsonl")


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        'name_prefix = "from-file"\nrate = 5\nmax_attempts = 3\n[aws]\nregion = "eu-west-1"\n'
    )
    env = {"A2IBATCH_RATE": "7.5", "A2IBATCH_NAME_PREFIX": "from-env"}
    s = load_settings({**REQUIRED, "name_prefix": "from-flag"}, config_file=cfg, environ=env)
    assert s.name_prefix == "from-flag"
    assert s.rate == 7.5
    assert s.max_attempts == 3
    assert s.aws.region == "eu-west-1"


def test_environment_alone_can_configure_a_job() -> None:
    env = {
        "A2IBATCH_TASK": "textract",
        "A2IBATCH_FLOW_DEFINITION_ARN": FLOW,
        "A2IBATCH_LEDGER": "x.jsonl",
        "A2IBATCH_FEATURE_TYPES": "TABLES, QUERIES",
        "A2IBATCH_RETRY_FAILED": "yes",
    }
    s = load_settings({}, environ=env)
    assert s.task is TaskType.TEXTRACT
    assert s.feature_types == ("TABLES", "QUERIES")
    assert s.retry_failed is True


@pytest.mark.parametrize(
    "name", ["defaults", "custom.example", "textract.example", "rekognition.example"]
)
def test_shipped_config_files_load(name: str) -> None:
    s = load_settings(
        REQUIRED if name == "defaults" else {},
        config_file=ROOT / "config" / f"{name}.toml",
        environ={},
    )
    assert s.max_attempts >= 1


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"task": "translate"}, "task must be one of"),
        ({"flow_definition_arn": "not-an-arn"}, "flow_definition_arn must be"),
        ({"name_prefix": "Upper_Case"}, "prefix"),
        ({"name_prefix": "x" * 40}, "prefix"),
        ({"rate": 0}, "rate must be"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"max_failures": "lots"}, "max_failures takes"),
        ({"max_failures": "150%"}, "max_failure_ratio must be"),
        ({"grace_period": -1}, "grace_period must be"),
        ({"content_classifiers": ("FreeOfEverything",)}, "content classifier"),
        ({"feature_types": ("PICTURES",)}, "feature types"),
        ({"endpoint_url": "http://10.1.2.3:9000"}, "plain-http"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    flags: dict[str, object], needle: str
) -> None:
    """A library caller reads the parameter's name, never a command-line flag."""
    with pytest.raises(ConfigError, match=needle) as caught:
        load_settings({**REQUIRED, **flags}, environ={})
    assert "--" not in str(caught.value)


def test_every_missing_required_setting_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"task": "custom"}, environ={})
    message = str(caught.value)
    assert "flow_definition_arn" in message and "ledger" in message
    assert "A2IBATCH_LEDGER" in message


def test_text_max_failures_from_any_source_becomes_a_count_or_a_ratio() -> None:
    assert load_settings({**REQUIRED, "max_failures": "25"}, environ={}).max_failures == 25
    ratio = load_settings(REQUIRED, environ={"A2IBATCH_MAX_FAILURES": "5%"}).max_failure_ratio
    assert ratio == pytest.approx(0.05)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("concurency = 5\n")
    with pytest.raises(ConfigError, match="unknown setting 'concurency'"):
        load_settings(REQUIRED, config_file=cfg, environ={})


def test_broken_file_and_bad_environment_value(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("rate = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(REQUIRED, config_file=cfg, environ={})
    with pytest.raises(ConfigError, match="A2IBATCH_RATE"):
        load_settings(REQUIRED, environ={"A2IBATCH_RATE": "fast"})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(REQUIRED, config_file=tmp_path / "missing.toml", environ={})


def test_endpoint_rules() -> None:
    check_endpoint("http://127.0.0.1:4566", False)
    check_endpoint("http://localhost:4566", False)
    check_endpoint("http://[::1]:4566", False)
    check_endpoint("https://a2i-runtime.sagemaker.us-east-1.amazonaws.com", False)
    check_endpoint("http://build-host:4566", True)
    with pytest.raises(ConfigError, match="allow_insecure_endpoint=True"):
        check_endpoint("http://build-host:4566", False)
    with pytest.raises(ConfigError):
        check_endpoint("ftp://x", True)


def test_max_failures_forms() -> None:
    assert parse_max_failures("100") == (100, None)
    assert parse_max_failures("5%") == (None, 0.05)
    with pytest.raises(ConfigError):
        parse_max_failures("lots")
