"""The words of ``--help``: what each command does, examples, exit codes, and where settings
come from."""

from __future__ import annotations

import argparse
from typing import Final

EXIT_CODES: Final = """\
exit codes:
  0    every item started or not activated (for other commands: done, nothing amiss)
  1    some items failed, were invalid or need a rerun (other commands: something needs
       attention: loops not final, outputs missing, differences found)
  2    a usage or configuration problem (bad flag, config file, ledger of another job)
  3    the job stopped on a fatal error (access denied, unknown flow definition, quota
       never freed, endpoint unreachable, max failures reached, ledger not writable)
  130  stopped by Ctrl-C or SIGTERM; the ledger is consistent and the same command resumes"""

SETTINGS: Final = """\
where settings come from (first wins):
  1. flags
  2. A2IBATCH_<SETTING> environment variables, e.g. A2IBATCH_RATE=50,
     A2IBATCH_LEDGER=forms-ledger.jsonl, A2IBATCH_ENDPOINT_URL=http://127.0.0.1:4566
  3. --config FILE (TOML; see config/*.example.toml)
  4. the defaults (config/defaults.toml)
  Credentials always come from the AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...).
  S3 calls go to --s3-endpoint-url, else AWS_ENDPOINT_URL_S3, else --endpoint-url."""

SUBMIT_EXAMPLES: Final = """\
examples:
  a2ibatch submit forms.jsonl --task textract \\
      --flow-definition-arn arn:aws:sagemaker:us-east-1:111122223333:flow-definition/forms \\
      --ledger forms-ledger.jsonl
  # documents in buckets of two regions: a flow per region, each document to its bucket's
  a2ibatch submit forms.jsonl --task textract --ledger forms-ledger.jsonl \\
      --flow-definition-arn arn:aws:sagemaker:us-east-1:111122223333:flow-definition/forms \\
      --flow-definition-arn arn:aws:sagemaker:eu-west-1:111122223333:flow-definition/forms
  a2ibatch submit claims.jsonl --config config/custom.example.toml --dry-run
  a2ibatch submit s3://my-bucket/manifests/claims.jsonl.gz --config claims.toml --rate 50
  cat items.jsonl | a2ibatch submit - --config claims.toml --no-progress"""

STATUS_EXAMPLES: Final = """\
examples:
  a2ibatch status forms-ledger.jsonl
  a2ibatch status forms-ledger.jsonl --list failed --list invalid
  a2ibatch status forms-ledger.jsonl --json | jq .items"""

LIFECYCLE_EXAMPLES: Final = {
    "track": """\
examples:
  a2ibatch track forms-ledger.jsonl
  a2ibatch track forms-ledger.jsonl --watch --interval 60 --timeout 86400""",
    "results": """\
examples:
  a2ibatch results forms-ledger.jsonl --out answers.jsonl
  a2ibatch results forms-ledger.jsonl --out answers.csv      # CSV, from the name
  a2ibatch results forms-ledger.jsonl --out answers.jsonl --manifest forms.jsonl""",
    "stop": """\
examples:
  a2ibatch stop forms-ledger.jsonl          # asks first
  a2ibatch stop forms-ledger.jsonl --yes""",
    "delete": """\
examples:
  a2ibatch delete forms-ledger.jsonl --yes""",
    "reconcile": """\
examples:
  a2ibatch reconcile forms-ledger.jsonl
  a2ibatch reconcile forms-ledger.jsonl --json""",
}

DEMO_EXAMPLES: Final = """\
examples:
  a2ibatch demo
  a2ibatch demo --task textract --items 5000
  a2ibatch demo --no-walk            # submit only"""


def epilog(*parts: str) -> str:
    return "\n\n".join(parts)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout, and shows defaults where a flag has one."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)
