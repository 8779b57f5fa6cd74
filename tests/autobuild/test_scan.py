"""The scan step: what the verify venv holds, scanned by pip-audit (here against an OSV
database served on loopback) or by jake against Nexus IQ when its credentials are set."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support import VERIFY, load_module, run_script, tools_env

pytest.importorskip("pip_audit")
jake_iq = load_module(VERIFY / "jake_iq.py", "pgpatch_verify_jake_iq")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path


def install_fake(venv: Path, name: str, version: str) -> None:
    """An installed distribution as pip sees it, without an index to fetch a real one from."""
    (site,) = venv.glob("lib/python*/site-packages")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


def scan_env(venv: Path, osv_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = tools_env(
        PGPATCH_VERIFY_VENV=str(venv),
        PGPATCH_VERIFY_REPORTS=str(tmp_path / "reports"),
        PIP_AUDIT_VULNERABILITY_SERVICE="osv",
        PIP_AUDIT_OSV_URL=osv_url,
        **extra,
    )
    for name in ("NEXUS_IQ_USERNAME", "NEXUS_IQ_PASSWORD"):
        env.pop(name, None)
    env.update(extra)
    return env


def test_scan_passes_when_nothing_is_known_bad(venv: Path, osv_url: str, tmp_path: Path) -> None:
    install_fake(venv, "goodlib", "1.0")
    install_fake(venv, "postgresqlpatches", "0.1.0+20240229215958")
    done = run_script(VERIFY / "verify.sh", env=scan_env(venv, osv_url, tmp_path))
    assert "scanner: pip-audit" in done.stdout
    requirements = (tmp_path / "reports" / "requirements.txt").read_text()
    assert "goodlib==1.0" in requirements
    assert "postgresqlpatches" not in requirements  # the wheel itself is on no public index


def test_scan_fails_on_a_known_vulnerability(venv: Path, osv_url: str, tmp_path: Path) -> None:
    install_fake(venv, "oldlib", "1.0")
    try:
        done = run_script(VERIFY / "verify.sh", env=scan_env(venv, osv_url, tmp_path), check=False)
    finally:  # the venv is shared with the other tests of this module
        (info,) = venv.glob("lib/python*/site-packages/oldlib-1.0.dist-info")
        shutil.rmtree(info)
    assert done.returncode != 0
    assert "PYSEC-0000-TEST" in done.stdout + done.stderr


def test_jake_arguments_carry_the_environment_credentials() -> None:
    env = {"NEXUS_IQ_URL": "https://iq.example", "NEXUS_IQ_APPLICATION": "pgpatch",
           "NEXUS_IQ_USERNAME": "u", "NEXUS_IQ_PASSWORD": "iq-Secret"}  # fmt: skip
    argv = jake_iq.jake_arguments("req.txt", env)
    assert argv[:2] == ["jake", "iq"]
    assert argv[argv.index("--password") + 1] == "iq-Secret"
    assert argv[argv.index("--input-file") + 1] == "req.txt"
    assert "-X" not in argv  # jake's debug output prints the password


def test_jake_needs_all_of_its_settings() -> None:
    with pytest.raises(SystemExit, match="NEXUS_IQ_URL, NEXUS_IQ_APPLICATION"):
        jake_iq.jake_arguments("req.txt", {"NEXUS_IQ_USERNAME": "u", "NEXUS_IQ_PASSWORD": "p"})


def test_scan_with_iq_credentials_uses_jake_and_keeps_them_off_the_command_line(
    venv: Path, osv_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("jake")
    secret = "iq-Secret-77a"
    env = scan_env(venv, osv_url, tmp_path, NEXUS_IQ_URL="http://127.0.0.1:9",
                   NEXUS_IQ_APPLICATION="pgpatch", NEXUS_IQ_USERNAME="iq",
                   NEXUS_IQ_PASSWORD=secret)  # fmt: skip
    proc = subprocess.Popen(
        ["sh", str(VERIFY / "verify.sh")], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    command_lines = []
    while proc.poll() is None:  # what every user of the machine can read in the process list
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                command_lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    output = proc.communicate(timeout=120)[0]
    assert "scanner: jake" in output
    assert proc.returncode != 0  # nothing listens on that port
    assert not [line for line in command_lines if secret in line]
    assert secret not in output
