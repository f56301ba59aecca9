"""After submit: follow the job's human loops to their answers, and clean up after them.

Every function here works from a ledger written by submit and touches only the loops that
ledger names (its ``started`` outcomes):

* `track` (`_track`) records each loop's status as the service reports it;
* `results` (`_results`) reads the reviewers' answers into a JSONL or CSV file, resumably;
* `stop_loops`, `delete_loops` (`_actions`) stop the in-progress loops and delete the
  finished ones, recording each action;
* `reconcile` (`_reconcile`) compares the ledger with the service's list of loops.

Calls go through the same `Caller` (meters, retry policy) as submit's, so a tracker polling a
million loops stays under the account's quota.  Nothing here prints or exits.
"""

from ._actions import ActionReport, action_past, candidates, delete_loops, stop_loops
from ._common import DEFAULT_INTERVAL
from ._reconcile import LedgerLoop, ReconcileReport, ServiceLoop, reconcile
from ._results import ResultsReport, parse_s3_uri, results
from ._results_file import CSV_COLUMNS, neutralise, unneutralise
from ._track import TrackReport, track

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_INTERVAL",
    "ActionReport",
    "LedgerLoop",
    "ReconcileReport",
    "ResultsReport",
    "ServiceLoop",
    "TrackReport",
    "action_past",
    "candidates",
    "delete_loops",
    "neutralise",
    "parse_s3_uri",
    "reconcile",
    "results",
    "stop_loops",
    "track",
    "unneutralise",
]
