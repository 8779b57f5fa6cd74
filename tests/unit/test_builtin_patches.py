"""The state database's own patches are applied on users' servers: once shipped, never edited.

An edit would make every server that applied the old text report the file as changed. Change
the state database's schema with a new ``patches.<YYYYMMDD>.<NNNN>.postgres.<what>.sql`` file
and add its checksum here.
"""

from postgresqlpatches.discovery import builtin_patches

SHIPPED = {
    "patches.00000000.0000.postgres.baseline.sql":
        "21aed3cef18ece0af88ddbf68951d5f64400052076938019781d7921bddb579f",
    "patches.20261126.0001.postgres.checksums_and_xids.sql":
        "3e65b1f9b2ede94e30c2b38a6227ebbdedbf26bcf2942d25aa64373f6acb52a5",
    "patches.20261201.0001.postgres.bootstrap_marks.sql":
        "c1bc09dd71e53c261801c4a50393a3f46a51b39471fec93cd8773db29399d96e",
}


def test_shipped_state_patches_are_never_edited() -> None:
    found = {p.name.filename: p.checksum for p in builtin_patches("patches")}
    assert found == SHIPPED


def test_state_patches_follow_the_state_db_name() -> None:
    names = [p.name.database for p in builtin_patches("pgpatch_state")]
    assert names == ["pgpatch_state"] * len(SHIPPED)
