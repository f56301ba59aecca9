"""The ledger: the append-only JSONL record that makes a job resumable and exactly-once.

* `_format`: every record type and the job header;
* `_files`: the only code touching ledger bytes (open and lock, lines, append, cut, fsync);
* `_store`: where a ledger lives (`LocalStore`), behind a small interface;
* `_location`: where a job's ledgers live (a file, a directory of shards' ledgers) and
  `_s3store`: a ledger in S3 (segments, a lease);
* `_reader`: the one reader (`read_ledger`), used by submit, status and every lifecycle command,
  building a `LedgerIndex` (`_index`);
* `_writer`: the one writer, in run or append mode;
* `_resume`: a local ledger's resume point (its index saved, and the manifest's mark), so
  that a rerun need not read the whole ledger and manifest again.

``docs/ledger.md`` describes the format and the guarantees.
"""

from ._files import MAX_LINE_BYTES, LedgerFile, append_all_to, last_line_end, last_record
from ._format import (
    SIDECAR_SUFFIX,
    JobHeader,
    dumps,
    iso_time,
    loop_action_record,
    loop_status_record,
    outcome_record,
    parse_time,
    utc_timestamp,
)
from ._index import FINAL_STATUSES, LedgerIndex, LoopState, Row
from ._location import (
    DirectoryLocation,
    FileLocation,
    Location,
    is_directory,
    ledger_name,
    location_for,
    read_location,
)
from ._reader import load_ledger, read_ledger
from ._resume import RESUME_SUFFIX, ManifestMark, ResumeKeeper, keeper_for, load_resume, new_index
from ._store import LedgerStore, LocalStore, RunFiles, open_writer
from ._writer import LedgerWriter

__all__ = [
    "FINAL_STATUSES",
    "MAX_LINE_BYTES",
    "RESUME_SUFFIX",
    "SIDECAR_SUFFIX",
    "DirectoryLocation",
    "FileLocation",
    "JobHeader",
    "LedgerFile",
    "LedgerIndex",
    "LedgerStore",
    "LedgerWriter",
    "LocalStore",
    "Location",
    "LoopState",
    "ManifestMark",
    "ResumeKeeper",
    "Row",
    "RunFiles",
    "append_all_to",
    "dumps",
    "is_directory",
    "iso_time",
    "keeper_for",
    "last_line_end",
    "last_record",
    "ledger_name",
    "load_ledger",
    "load_resume",
    "location_for",
    "loop_action_record",
    "loop_status_record",
    "new_index",
    "open_writer",
    "outcome_record",
    "parse_time",
    "read_ledger",
    "read_location",
    "utc_timestamp",
]
