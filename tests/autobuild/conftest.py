"""Fixtures of the build pipeline's tests: a loopback package index.

These tests need the ``autobuild`` extra (buildbot, build, twine, pypiserver, pip-audit).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
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


VULNERABLE = {
    "id": "PYSEC-0000-TEST",
    "summary": "remote code execution in oldlib",
    "affected": [
        {
            "package": {"name": "oldlib", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
        }
    ],
}


class _Osv(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        found = query["package"]["name"] == "oldlib" and query["version"] == "1.0"
        body = json.dumps({"vulns": [VULNERABLE]} if found else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    """A vulnerability database that knows one bad package, on loopback."""
    server = HTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/query"
    server.shutdown()
    server.server_close()
