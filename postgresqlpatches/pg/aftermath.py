"""What an interrupted apply left of the patch it was running, asked of the server.

Ctrl-C can stop a patch anywhere: before its record was written, while its COMMIT was
queued, after the server committed it. Once every session of the run is closed (so the
server has rolled back what did not commit), the lock session and the state database say
which it was; the answer is what the user reads, and settling the record here spares the
next run the question. When the server cannot answer, nothing is changed: the next run
settles the record as after a crash (docs/safety.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postgresqlpatches.core.planner import Action

if TYPE_CHECKING:
    from postgresqlpatches.core.planner import Step
    from postgresqlpatches.pg.server import Maintenance, Server

log = logging.getLogger("pgpatch")

SETTLE_WAIT_SECONDS = 3.0
"""How long to wait for the server to roll back the transaction of a closed session."""
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Fate:
    """What became of the patch in flight: ``committed`` (it is applied and recorded), and
    in words, for the error line, what it left and what the next run does."""

    committed: bool
    words: str


NOT_KNOWN = Fate(False, "what became of it is not known here: the next run asks the server "
                        "and settles its record")


def fate_of(server: Server, maint: Maintenance, state_db: str, step: Step,
            wait: float = SETTLE_WAIT_SECONDS) -> Fate:
    """The fate of ``step``, stopped by an interrupt; never raises (a second Ctrl-C, a lost
    server: the answer is then that it is not known)."""
    from postgresqlpatches.errors import PgpatchError
    from postgresqlpatches.pg.errors import server_errors

    try:
        with server_errors():
            return _fate_of(server, maint, state_db, step, wait)
    except (PgpatchError, KeyboardInterrupt) as e:
        log.debug("the fate of %s was not asked: %r", step.patch.path, e)
        return NOT_KNOWN


def _fate_of(server: Server, maint: Maintenance, state_db: str, step: Step,
             wait: float) -> Fate:
    from postgresqlpatches.core.records import Record
    from postgresqlpatches.pg.state import StateStore, open_state

    database = step.patch.name.database
    if step.action is Action.BOOTSTRAP:
        if database not in maint.existing_databases({database}):
            return Fate(False, f"the bootstrap of {database} was undone, nothing of it is "
                               "left: the next run makes the database again")
        return Fate(False, f"the bootstrap of {database} was cut short and the database "
                           "left as it is: `pgpatch plan` says whether the next run makes it "
                           "again")
    rolled_back = Fate(False, "it was rolled back, nothing of it committed: the next run runs "
                              "it again")
    conn = open_state(server, state_db) if state_db in maint.existing_databases(
        {state_db}) else None
    if conn is None:
        return rolled_back
    store = StateStore(conn)
    try:
        def own() -> Record | None:
            key = (database, step.patch.name.major, step.patch.name.minor)
            return next((r for r in store.records() if r.key == key), None)

        record = own()
        if record is None:
            return rolled_back
        if record.settled:
            return Fate(True, "it had committed and is recorded as applied")
        if record.xid is None:  # non-transactional: each statement done is recorded
            done = record.statements_done or 0
            total = len(step.statements)
            if not done:
                return Fate(False, "none of its statements had completed: the next run runs "
                                   "it from its first statement")
            return Fate(False, f"statements 1-{done} of {total} ran and stay done: the next "
                               f"run resumes at statement {done + 1}")
        deadline = time.monotonic() + wait
        while True:
            status = maint.xact_status([record.xid]).get(record.xid)
            if status != "in progress" or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        if status == "committed":
            store.mark_settled([record.id])
            return Fate(True, "it had committed and is recorded as applied")
        if status == "aborted":
            store.delete([record.id])
            return rolled_back
        return Fate(False, f"its outcome is not known yet (its transaction is {status}): its "
                           "record stays unsettled, and the next run asks the server and "
                           "settles it")
    finally:
        store.close()
