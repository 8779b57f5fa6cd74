"""Fixtures of the build pipeline's tests: a loopback package index.

These tests need the ``autobuild`` extra (buildbot, build, twine, pypiserver, pip-audit).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from .support import REPOSITORY_NAMES


@dataclass(frozen=True)
class PackageIndex:
    """pypiserver, one index per repository name under one base URL, with a login."""

    base_url: str
    root: Path
    username: str
    password: str

    def files(self, repository: str) -> list[str]:
        return sorted(p.name for p in (self.root / repository).iterdir())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[PackageIndex]:
    """A real pypiserver on loopback, started here and stopped at the end of the test.

    pypiserver serves one index at ``/``; the Nexus layout (``BASE/production/`` ...) is one
    pypiserver app per repository, dispatched by the first path segment."""
    pypiserver = pytest.importorskip("pypiserver")
    passlib_apache = pytest.importorskip("passlib.apache")
    username, password = "uploader", "index-Secret-7c1e"
    htpasswd = passlib_apache.HtpasswdFile(str(tmp_path / "htpasswd"), new=True)
    htpasswd.set_password(username, password)
    htpasswd.save()
    root = tmp_path / "index"
    apps = {}
    for name in REPOSITORY_NAMES:
        (root / name).mkdir(parents=True)
        apps[name] = pypiserver.app(
            roots=[str(root / name)],
            password_file=str(tmp_path / "htpasswd"),
            authenticate=["update"],
            disable_fallback=True,
        )

    def dispatch(environ: dict, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        first, _, rest = path.lstrip("/").partition("/")
        if first not in apps:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such repository\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + first
        environ["PATH_INFO"] = "/" + rest
        return apps[first](environ, start_response)

    server: WSGIServer = make_server("127.0.0.1", 0, dispatch, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield PackageIndex(
            base_url=f"http://127.0.0.1:{server.server_port}/",
            root=root,
            username=username,
            password=password,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
