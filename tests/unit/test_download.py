"""fetch_url against a real HTTP server on 127.0.0.1: cache, sha256, atomicity, failures."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cordatlas.errors import UserInputError
from cordatlas.io import download
from cordatlas.io.download import DownloadError, cache_path, fetch_url

BODY = bytes(range(256)) * 64  # 16 KiB, not valid text, so byte-exactness matters
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path == "/data/counts.csv.gz":
            self._send(BODY)
        elif self.path == "/drop":
            self._drop_mid_body()
        elif self.path == "/flaky":
            if self.server.requests.count("/flaky") == 1:
                self._drop_mid_body()
            else:
                self._send(BODY)
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:100])
            self.wfile.flush()
            self.server.release.wait(timeout=5)  # bounded: teardown sets it
        else:
            self.send_error(404, "not found")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop_mid_body(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY[: len(BODY) // 2])
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.release = threading.Event()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)


def _url(server: _Server, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_sha_and_second_call_uses_cache(server: _Server, tmp_path: Path) -> None:
    url = _url(server, "/data/counts.csv.gz")
    dest = cache_path(url, tmp_path / "cache")

    first = fetch_url(url, dest, sha256=BODY_SHA.upper())
    assert first == dest
    assert dest.read_bytes() == BODY
    assert server.requests == ["/data/counts.csv.gz"]
    assert _leftovers(dest.parent) == ["counts.csv.gz"]  # no temporary file left

    second = fetch_url(url, dest, sha256=BODY_SHA)
    assert second == dest
    assert server.requests == ["/data/counts.csv.gz"]  # served from the cache


def test_cache_without_sha_makes_no_request(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "counts.csv.gz"
    dest.write_bytes(b"already here")
    assert fetch_url(_url(server, "/data/counts.csv.gz"), dest) == dest
    assert dest.read_bytes() == b"already here"
    assert server.requests == []


def test_stale_cache_is_downloaded_again(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "counts.csv.gz"
    dest.write_bytes(b"truncated earlier")
    fetch_url(_url(server, "/data/counts.csv.gz"), dest, sha256=BODY_SHA)
    assert dest.read_bytes() == BODY
    assert len(server.requests) == 1


def test_sha_mismatch_raises_and_leaves_no_file(server: _Server, tmp_path: Path) -> None:
    url = _url(server, "/data/counts.csv.gz")
    dest = tmp_path / "dl" / "counts.csv.gz"
    wrong = "0" * 64
    with pytest.raises(UserInputError) as info:
        fetch_url(url, dest, sha256=wrong)
    message = str(info.value)
    assert url in message and wrong in message and BODY_SHA in message
    assert _leftovers(dest.parent) == []
    assert len(server.requests) == 1  # a mismatch is not retried


def test_http_404_leaves_nothing_and_is_not_retried(server: _Server, tmp_path: Path) -> None:
    url = _url(server, "/nope.h5")
    dest = tmp_path / "dl" / "nope.h5"
    with pytest.raises(DownloadError, match="404") as info:
        fetch_url(url, dest, retries=3)
    assert url in str(info.value)
    assert _leftovers(dest.parent) == []
    assert server.requests == ["/nope.h5"]


def test_connection_dropped_mid_body_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "drop.bin"
    with pytest.raises(DownloadError, match="after 3 attempt"):
        fetch_url(_url(server, "/drop"), dest, retries=3)
    assert _leftovers(dest.parent) == []
    assert server.requests == ["/drop"] * 3


def test_dropped_connection_is_retried(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "flaky.bin"
    fetch_url(_url(server, "/flaky"), dest, sha256=BODY_SHA, retries=2)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/flaky", "/flaky"]
    assert _leftovers(tmp_path) == ["flaky.bin"]


def test_stalled_server_times_out_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "stall.bin"
    with pytest.raises(DownloadError):
        fetch_url(_url(server, "/stall"), dest, timeout=0.3, retries=1)
    assert _leftovers(dest.parent) == []


def test_file_url(tmp_path: Path) -> None:
    source = tmp_path / "source.h5"
    source.write_bytes(BODY)
    dest = tmp_path / "out" / "copy.h5"
    fetch_url(source.as_uri(), dest, sha256=BODY_SHA)
    assert dest.read_bytes() == BODY
    with pytest.raises(DownloadError):
        fetch_url((tmp_path / "missing.h5").as_uri(), tmp_path / "out" / "missing.h5")
    assert _leftovers(tmp_path / "out") == ["copy.h5"]


def test_unsupported_scheme_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="ftp"):
        fetch_url("ftp://example.org/x.h5", tmp_path / "x.h5")


def test_cache_path_is_deterministic_and_keeps_extensions(tmp_path: Path) -> None:
    url = "https://example.org/geo/GSE100866_CD8_merged-RNA_umi.csv.gz?download=1"
    path = cache_path(url, tmp_path)
    assert path == cache_path(url, tmp_path)
    assert path.name == "GSE100866_CD8_merged-RNA_umi.csv.gz"
    assert path.parent.parent == tmp_path
    assert cache_path("https://example.org/a/matrix.tar.gz", tmp_path).name.endswith(".tar.gz")
    other = cache_path("https://example.org/other/GSE100866_CD8_merged-RNA_umi.csv.gz", tmp_path)
    assert other.name == path.name and other.parent != path.parent
    assert cache_path("https://example.org/", tmp_path).name == "download"
