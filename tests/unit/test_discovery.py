"""Globs to patches: order by name never path, duplicates, unreadable files, checksums."""

import os
from pathlib import Path

import pytest

from postgresqlpatches.core.checksums import text_checksum as checksum
from postgresqlpatches.core.discovery import discover


def write(path: Path, text: str = "select 1;\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_order_follows_names_not_folders(tmp_path: Path) -> None:
    write(tmp_path / "z" / "app.20200101.0001.u.first.sql")
    write(tmp_path / "a" / "app.20200102.0001.u.second.sql")
    write(tmp_path / "m" / "app.00000000.0000.postgres.baseline.sql")
    patches, problems = discover([str(tmp_path / "**" / "*.sql")], with_builtin=False)
    assert problems == []
    assert [p.name.description for p in patches] == ["baseline", "first", "second"]


def test_state_database_patches_come_first(tmp_path: Path) -> None:
    write(tmp_path / "aaa.20200101.0001.u.x.sql")
    patches, problems = discover([str(tmp_path / "*.sql")])
    assert problems == []
    assert patches[0].name.database == "patches" and patches[0].builtin
    assert patches[-1].name.database == "aaa"


def test_state_db_option_renames_the_builtin_patches(tmp_path: Path) -> None:
    patches, _ = discover([], state_db="pgpatch_state")
    assert {p.name.database for p in patches} == {"pgpatch_state"}


def test_duplicate_version_names_both_files(tmp_path: Path) -> None:
    a = write(tmp_path / "one" / "app.20200101.0001.u.first.sql")
    b = write(tmp_path / "two" / "app.20200101.0001.v.other.sql")
    _, problems = discover([str(tmp_path / "**" / "*.sql")], with_builtin=False)
    assert [p.kind for p in problems] == ["duplicate"]
    assert str(a) in problems[0].message and str(b) in problems[0].message


def test_a_user_file_cannot_replace_a_builtin_patch(tmp_path: Path) -> None:
    write(tmp_path / "patches.00000000.0000.postgres.baseline.sql")
    _, problems = discover([str(tmp_path / "*.sql")])
    assert [p.kind for p in problems] == ["duplicate"]
    assert "ship with pgpatch" in (problems[0].hint or "")


def test_glob_with_no_match_is_named(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing" / "*.sql")
    _, problems = discover([pattern], with_builtin=False)
    assert [(p.kind, p.path) for p in problems] == [("no-match", pattern)]


def test_same_file_from_two_globs_counts_once(tmp_path: Path) -> None:
    write(tmp_path / "app.20200101.0001.u.x.sql")
    patches, problems = discover([str(tmp_path / "*.sql"), str(tmp_path / "app.*")],
                                 with_builtin=False)
    assert problems == [] and len(patches) == 1


def test_bad_name_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "README.md")
    _, problems = discover([str(tmp_path / "*")], with_builtin=False)
    assert [(p.kind, p.path) for p in problems] == [("bad-name", str(bad))]


def test_non_utf8_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "app.20200101.0001.u.x.sql"
    path.write_bytes(b"select 1;\nselect 'caf\xe9';\n")
    _, problems = discover([str(path)], with_builtin=False)
    assert [(p.kind, p.path, p.line) for p in problems] == [("unreadable", str(path), 2)]
    assert "UTF-8" in problems[0].message


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "app.20200101.0001.u.x.sql"
    path.mkdir()  # a directory named like a patch: skipped by the glob, so read it directly
    (tmp_path / "app.20200101.0002.u.y.sql").symlink_to(tmp_path / "missing.sql")
    _, problems = discover([str(tmp_path / "*.sql")], with_builtin=False)
    assert [p.kind for p in problems] == ["unreadable"]
    assert "cannot read" in problems[0].message


@pytest.mark.parametrize("variant", ["a\r\nb\r\n", "a\rb\r", "a\nb\n"])
def test_line_endings_do_not_change_the_checksum(variant: str) -> None:
    assert checksum(variant) == checksum("a\nb\n")


def test_content_changes_the_checksum() -> None:
    assert checksum("a\nb\n") != checksum("a\nc\n")


def test_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "app.20200101.0001.u.x.sql"
    path.write_bytes("\ufeffselect 1;\n".encode())
    patches, _ = discover([str(path)], with_builtin=False)
    assert patches[0].text == "select 1;\n"


def _discover_within(seconds: float, patterns: list[str]) -> tuple[list, list]:
    """discover() in a daemon thread: a regression that opens a FIFO blocks there forever,
    and the test fails after ``seconds`` instead of hanging."""
    import threading

    out: list[tuple[list, list]] = []
    worker = threading.Thread(target=lambda: out.append(discover(patterns, with_builtin=False)),
                              daemon=True)
    worker.start()
    worker.join(seconds)
    assert out, f"discover() still running after {seconds} s: it opened the FIFO"
    return out[0]


def test_a_fifo_named_like_a_patch_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "app.20200101.0002.u.pipe.sql"
    os.mkfifo(fifo)
    write(tmp_path / "app.20200101.0001.u.x.sql")
    patches, problems = _discover_within(5, [str(tmp_path / "*.sql")])
    assert [p.name.description for p in patches] == ["x"]
    assert [(p.kind, p.path, p.message) for p in problems] == [
        ("unreadable", str(fifo),
         "the file is a FIFO, not a regular file: pgpatch does not open it")]


def test_a_link_to_a_fifo_and_a_glob_of_only_a_socket_are_refused(tmp_path: Path) -> None:
    import socket

    fifo = tmp_path / "elsewhere.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "app.20200101.0001.u.link.sql"
    link.symlink_to(fifo)
    sock_path = tmp_path / "s" / "app.20200101.0002.u.sock.sql"
    sock_path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        _, problems = _discover_within(5, [str(tmp_path / "*.sql"),
                                           str(tmp_path / "s" / "*.sql")])
    assert [(p.kind, p.path) for p in problems] == [
        ("unreadable", str(link)), ("unreadable", str(sock_path))]  # no "no-match" for s/
    assert "a FIFO" in problems[0].message and "a socket" in problems[1].message
