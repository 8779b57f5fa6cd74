"""Every pending patch logs in as the user in its name: that role must exist when it runs.

A role the server does not have is fine when an earlier pending patch of the same run
creates it by name (a bootstrap's baseline, usually). When none does, the patch would fail
to connect half-way through the run: the plan says so first. Where an earlier patch might
create it in a way the text does not show by name (EXECUTE format(...), a psql variable),
pgpatch cannot rule the creation out: a warning instead of a problem.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING

from postgresqlpatches.core.records import Problem

if TYPE_CHECKING:
    from postgresqlpatches.core.planner import Step


def missing_logins(pending: Sequence[Step], roles: Container[str],
                   blamed: frozenset[str] = frozenset()) -> tuple[list[Problem], list[str]]:
    """The problems (kind ``no-role``) and warnings (for log.warning) of the users that
    ``pending`` steps log in as and that neither ``roles`` (the server's) nor an earlier
    pending step creates. A step whose file has a problem already (``blamed``, by path) is
    not told again, but the roles it creates still count for the steps after it."""
    created: set[str] = set()
    scanned = 0  # the steps before this one whose texts were scanned for CREATE ROLE
    told: set[str] = set()
    problems: list[Problem] = []
    warnings: list[str] = []
    for index, step in enumerate(pending):
        patch = step.patch
        user = patch.name.user
        if patch.path in blamed or user in roles or user in told:
            continue
        # the earlier steps are scanned only now, for a user the server lacks: a run whose
        # users all exist scans nothing (the scan cost 0.05-0.1 ms per pending patch)
        for earlier in pending[scanned:index]:
            created |= earlier.patch.created_roles
        scanned = index
        if user in created:
            continue
        told.add(user)
        named = re.compile(rf"(?<![A-Za-z0-9_$]){re.escape(user)}(?![A-Za-z0-9_$])",
                           re.IGNORECASE)
        maker = next((s.patch.path for s in pending[:index] if named.search(s.patch.text)),
                     None)
        if maker is not None:
            warnings.append(
                f"{patch.path}: role {user} does not exist on the server; an "
                "earlier patch of this run names it but does not create it by name "
                "(CREATE ROLE): if it does not make it, this patch fails to log in "
                "[no-role]")
        else:
            problems.append(Problem(
                "no-role", patch.path,
                f"role {user} does not exist on the server, and no earlier patch of this "
                "run creates it: the patch would fail to log in",
                hint=f"create the role {user} before it (in the database's 0000 baseline, "
                     "or a patch of its own), or fix the user in the file name"))
    return problems, warnings
