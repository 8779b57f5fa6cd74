"""Shell completion is click's: the lines the README gives for bash, zsh and fish print a
script, and the script's questions get pgpatch's commands, options and files back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postgresqlpatches.cli import main

ROOT = Path(__file__).resolve().parents[2]
PGPATCH = Path(sys.executable).parent / "pgpatch"  # the console script the README's lines run
COMMANDS = sorted(main.commands)


def _pgpatch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert PGPATCH.exists(), f"the console script {PGPATCH} is not installed"
    return subprocess.run([str(PGPATCH)], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def _complete(line: str) -> list[str]:
    """What bash's completion function asks for ``line`` (the word under the cursor last)."""
    words = line.split(" ")
    result = _pgpatch({"_PGPATCH_COMPLETE": "bash_complete", "COMP_WORDS": line,
                       "COMP_CWORD": str(len(words) - 1)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("shell, line, marker", [
    ("bash", 'eval "$(_PGPATCH_COMPLETE=bash_source pgpatch)"',
     "complete -o nosort -F _pgpatch_completion pgpatch"),
    ("zsh", 'eval "$(_PGPATCH_COMPLETE=zsh_source pgpatch)"', "#compdef pgpatch"),
    ("fish", "_PGPATCH_COMPLETE=fish_source pgpatch | source",
     "complete --no-files --command pgpatch"),
])
def test_each_shells_line_in_the_readme_prints_its_completion_script(
        shell: str, line: str, marker: str) -> None:
    assert line in (ROOT / "README.md").read_text(encoding="utf-8")
    result = _pgpatch({"_PGPATCH_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_the_command_names_complete() -> None:
    assert _complete("pgpatch ") == [f"plain,{c}" for c in COMMANDS]
    assert _complete("pgpatch st") == ["plain,status"]
    assert _complete("pgpatch -l debug ") == [f"plain,{c}" for c in COMMANDS]


def test_options_and_their_choices_complete() -> None:
    assert _complete("pgpatch plan --form") == ["plain,--format"]
    assert _complete("pgpatch plan --format ") == ["plain,table", "plain,json"]
    assert _complete("pgpatch demo --") == ["plain,--keep", "plain,--log-level", "plain,--help"]


def test_globs_complete_as_files() -> None:
    assert _complete("pgpatch plan exam") == ["file,exam"]
    assert _complete("pgpatch status ") == ["file,"]


@pytest.mark.parametrize("line", ["pgpatch frob ", "pgpatch --lint=off plan ",
                                  "pgpatch --host db demo --", "pgpatch plan --state-db Bad "])
def test_a_half_typed_or_wrong_line_completes_without_an_error(line: str) -> None:
    _complete(line)  # exit 0 and nothing on stderr: no usage error, no traceback


def test_the_bash_script_answers_in_a_real_bash() -> None:
    script = _pgpatch({"_PGPATCH_COMPLETE": "bash_source"}).stdout
    probe = script + '\nCOMP_WORDS=(pgpatch pl); COMP_CWORD=1; _pgpatch_completion pgpatch\n' \
                     'printf "%s\\n" "${COMPREPLY[@]}"\n'
    env = {**os.environ, "PATH": f"{PGPATCH.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "--norc", "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["plan"]
