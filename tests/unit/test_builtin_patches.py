"""The state database's own patches are applied on users' servers: once shipped, never edited.

An edit would make every server that applied the old text report the file as changed. Change
the state database's schema with a new ``patches.<YYYYMMDD>.<NNNN>.postgres.<what>.sql`` file
and add its checksums here: servers hold records in either checksum version, version 1 (the
text) from pgpatch before token checksums, version 2 (the tokens) since, so both are pinned.
"""

from postgresqlpatches.core.discovery import builtin_patches

SHIPPED = {  # file: (version 1, version 2)
    "patches.00000000.0000.postgres.baseline.sql": (
        "21aed3cef18ece0af88ddbf68951d5f64400052076938019781d7921bddb579f",
        "93a66a5d61984cec4de8af5d508881d71d4b3f050ab2077693e1816403af50c6"),
    "patches.20261126.0001.postgres.checksums_and_xids.sql": (
        "3e65b1f9b2ede94e30c2b38a6227ebbdedbf26bcf2942d25aa64373f6acb52a5",
        "ae0e58400b5e3f0e53972611e7939c3b1ef78100a921d43072d63b12784ad9ea"),
    "patches.20261201.0001.postgres.bootstrap_marks.sql": (
        "c1bc09dd71e53c261801c4a50393a3f46a51b39471fec93cd8773db29399d96e",
        "74c1c7239c01a2984efd9f8e00bab1f20f8ad1924a92e58d01e08a6dbbd409f1"),
    "patches.20261201.0003.postgres.token_checksums.sql": (
        "5a729df05348be99a2ce16f477a134a88daa40c572a1be1af9e87bf311b9dde7",
        "c97f1d1e3a87612f6cb29b7f5fcd7fa0600b6476c36cdfe753d29afe01928b4f"),
    "patches.20261202.0001.postgres.repeatable_runs.sql": (
        "0f63a1458d6c568d102155c2e19d22389fb03b4917d3babeefe232b4879e87ac",
        "b2e956c8336e43baa8aef7effbb149b5e99d12232cb8ddd7728826eb902db453"),
}


def test_shipped_state_patches_are_never_edited() -> None:
    found = {p.name.filename: (p.text_checksum, p.checksum) for p in builtin_patches("patches")}
    assert found == SHIPPED


def test_state_patches_follow_the_state_db_name() -> None:
    names = [p.name.database for p in builtin_patches("pgpatch_state")]
    assert names == ["pgpatch_state"] * len(SHIPPED)
