"""fetch_url against a real HTTP server on 127.0.0.1: cache, sha256, atomicity, failures.

The server cuts connections mid-file (with Content-Length, with chunked encoding, and with
neither), answers 4xx and 5xx, sends the wrong bytes and stalls; every failure must leave no
file a rerun would trust, and only transient failures may be retried.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cordatlas.errors import UserInputError
from cordatlas.io import download
from cordatlas.io.download import (
    DownloadError,
    cache_path,
    check_shared_downloads,
    fetch_url,
    remove_stale_parts,
)

BODY = bytes(range(256)) * 64  # 16 KiB, not valid text, so byte-exactness matters
BODY_SHA = hashlib.sha256(BODY).hexdigest()
WRONG_BODY = BODY[::-1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        seen = self.server.requests.count(self.path)
        if self.server.watch is not None:
            self.server.listings.append(sorted(os.listdir(self.server.watch)))
        route = {
            "/data/counts.csv.gz": lambda: self._send(BODY),
            "/wrong": lambda: self._send(WRONG_BODY),
            "/drop": self._drop_mid_body,
            "/flaky": lambda: self._drop_mid_body() if seen == 1 else self._send(BODY),
            "/busy": lambda: self.send_error(503) if seen == 1 else self._send(BODY),
            "/stall": self._stall,
            "/chunked": lambda: self._chunked(BODY, end=True),
            "/chunked-cut": lambda: self._chunked(BODY[: len(BODY) // 2], end=False),
            "/unframed": lambda: self._unframed(BODY),
            # cut at a different byte each time, as a flaky network would
            "/unframed-cut": lambda: self._unframed(BODY[: len(BODY) * seen // 4]),
            "/unframed-flaky": lambda: self._unframed(BODY if seen > 1 else BODY[:1000]),
        }.get(self.path)
        if route is not None:
            route()
        elif self.path.startswith("/status/"):
            self.send_error(int(self.path.rsplit("/", 1)[1]))
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

    def _stall(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY[:100])
        self.wfile.flush()
        self.server.release.wait(timeout=5)  # bounded: teardown sets it

    def _chunked(self, body: bytes, *, end: bool) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 4096):
            piece = body[start : start + 4096]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        if end:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _unframed(self, body: bytes) -> None:
        """HTTP/1.0 style: no Content-Length, no chunking; the body ends where the connection does."""
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.release = threading.Event()
        self.watch: Path | None = None  # a folder listed at each request (part files)
        self.listings: list[list[str]] = []


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


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _url(server: _Server, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- complete transfers and the cache -----------------------------------------------------
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


def test_chunked_body_with_its_end_marker_is_complete(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "chunked.bin"
    fetch_url(_url(server, "/chunked"), dest)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/chunked"]  # the end marker proves it: no second transfer


@pytest.mark.parametrize("umask_bits, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_cached_file_is_readable_as_the_umask_allows(
    server: _Server, tmp_path: Path, umask: None, umask_bits: int, mode: int
) -> None:
    os.umask(umask_bits)
    dest = tmp_path / "shared" / "counts.csv.gz"
    fetch_url(_url(server, "/data/counts.csv.gz"), dest, sha256=BODY_SHA)
    assert dest.stat().st_mode & 0o777 == mode
    assert dest.parent.stat().st_mode & 0o777 == 0o777 & ~umask_bits


# ---- final errors: never retried ----------------------------------------------------------
@pytest.mark.parametrize("path", ["/data/counts.csv.gz", "/wrong"])
def test_sha_mismatch_raises_and_leaves_no_file(server: _Server, tmp_path: Path, path) -> None:
    url = _url(server, path)
    dest = tmp_path / "dl" / "counts.csv.gz"
    wrong = "0" * 64 if path != "/wrong" else BODY_SHA
    actual = hashlib.sha256(BODY if path != "/wrong" else WRONG_BODY).hexdigest()
    with pytest.raises(UserInputError) as info:
        fetch_url(url, dest, sha256=wrong, retries=3)
    message = str(info.value)
    assert url in message and wrong in message and actual in message
    assert "fix `sha256`" in message
    assert _leftovers(dest.parent) == []
    assert len(server.requests) == 1  # the body was complete: a mismatch is final


@pytest.mark.parametrize("status", [403, 404, 410])
def test_http_client_errors_leave_nothing_and_are_not_retried(
    server: _Server, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(server, f"/status/{status}")
    dest = tmp_path / "dl" / "nope.h5"
    with pytest.raises(DownloadError, match=f"HTTP {status}") as info:
        fetch_url(url, dest, retries=3)
    assert "retrying" not in caplog.text  # the error is said once, by the exception
    assert url in str(info.value) and "check `url` in the sample sheet" in str(info.value)
    assert _leftovers(dest.parent) == []
    assert server.requests == [f"/status/{status}"]


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


# ---- transient errors: retried, and nothing left when they persist ------------------------
def test_connection_dropped_mid_body_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "drop.bin"
    with pytest.raises(DownloadError, match="after 3 attempt") as info:
        fetch_url(_url(server, "/drop"), dest, retries=3)
    assert f"the connection closed after {len(BODY) // 2} of {len(BODY)} bytes" in str(info.value)
    assert _leftovers(dest.parent) == []
    assert server.requests == ["/drop"] * 3


def test_dropped_connection_is_retried(
    server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "flaky.bin"
    fetch_url(_url(server, "/flaky"), dest, sha256=BODY_SHA, retries=2)
    assert "attempt 1/2 to download" in caplog.text and "retrying" in caplog.text
    assert dest.read_bytes() == BODY
    assert server.requests == ["/flaky", "/flaky"]
    assert _leftovers(tmp_path) == ["flaky.bin"]


def test_server_error_is_retried(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "busy.bin"
    fetch_url(_url(server, "/busy"), dest, retries=2)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/busy", "/busy"]


def test_persistent_server_error_is_retried_then_named(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "down.bin"
    with pytest.raises(DownloadError, match="after 3 attempt.*HTTP 500"):
        fetch_url(_url(server, "/status/500"), dest, retries=3)
    assert server.requests == ["/status/500"] * 3
    assert _leftovers(dest.parent) == []


def test_chunked_body_cut_before_its_end_marker_is_not_cached(
    server: _Server, tmp_path: Path
) -> None:
    dest = tmp_path / "dl" / "chunked.bin"
    with pytest.raises(
        DownloadError, match="after 2 attempt.*closed before the chunked body's end marker"
    ):
        fetch_url(_url(server, "/chunked-cut"), dest, retries=2)
    assert _leftovers(dest.parent) == []
    assert server.requests == ["/chunked-cut"] * 2


def test_stalled_server_times_out_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "stall.bin"
    server.watch = dest.parent
    with pytest.raises(DownloadError, match=r"sent nothing for 0.3 s \(timed out\)"):
        fetch_url(_url(server, "/stall"), dest, timeout=0.3, retries=2)
    assert server.requests == ["/stall"] * 2  # a stall is transient
    assert _leftovers(dest.parent) == []
    # while each attempt ran, its body went to one hidden part file of its own, named for this
    # host and process (so a later attempt can tell a killed download's part from a live one)
    parts = [part for (part,) in server.listings]
    assert len(set(parts)) == 2
    for part in parts:
        assert part.startswith(".stall.bin.") and part.endswith(".part")
        assert f"{download._host()}-{os.getpid()}-" in part


# ---- a server that sends no length: completeness proven another way -----------------------
def test_unframed_body_is_proven_by_a_second_identical_transfer(
    server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "unframed.bin"
    with caplog.at_level(logging.INFO, logger="cordatlas.io.download"):
        fetch_url(_url(server, "/unframed"), dest)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/unframed"] * 2
    assert "neither Content-Length nor chunked encoding" in caplog.text
    assert _leftovers(tmp_path) == ["unframed.bin"]


def test_unframed_body_with_sha_needs_one_transfer(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "unframed.bin"
    fetch_url(_url(server, "/unframed"), dest, sha256=BODY_SHA)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/unframed"]


def test_unframed_cut_transfer_without_sha_is_refused(server: _Server, tmp_path: Path) -> None:
    """The bug: a body cut mid-file with no length and no sha256 was cached as complete."""
    url = _url(server, "/unframed-cut")
    dest = tmp_path / "dl" / "cut.bin"
    with pytest.raises(DownloadError) as info:
        fetch_url(url, dest)
    message = str(info.value)
    assert url in message and "cannot be told from a complete one" in message
    assert f"{len(BODY) // 4} bytes" in message and f"{len(BODY) // 2} bytes" in message
    assert "set `sha256` for this url in the sample sheet" in message
    assert _leftovers(dest.parent) == []  # nothing a rerun would trust
    # a rerun downloads again rather than reusing anything
    with pytest.raises(DownloadError):
        fetch_url(url, dest)
    assert len(server.requests) == 4


def test_unframed_cut_with_sha_is_retried_as_transient(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "flaky.bin"
    fetch_url(_url(server, "/unframed-flaky"), dest, sha256=BODY_SHA, retries=2)
    assert dest.read_bytes() == BODY
    assert server.requests == ["/unframed-flaky"] * 2


def test_unframed_wrong_digest_every_time_names_both_causes(
    server: _Server, tmp_path: Path
) -> None:
    dest = tmp_path / "dl" / "cut.bin"
    with pytest.raises(DownloadError) as info:
        fetch_url(_url(server, "/unframed"), dest, sha256="a" * 64, retries=2)
    message = str(info.value)
    assert "a" * 64 in message and BODY_SHA in message and "in each of 2 attempt(s)" in message
    assert "cut short would look the same" in message
    assert server.requests == ["/unframed"] * 2
    assert _leftovers(dest.parent) == []


# ---- killed downloads: their part files do not stay forever -------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_parts_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dest = tmp_path / "counts.csv.gz"
    host = download._host()
    names = {
        "dead": f".counts.csv.gz.{host}-{_dead_pid()}-0123abcd.part",
        "live": f".counts.csv.gz.{host}-{os.getpid()}-0123abcd.part",
        "other_host_fresh": ".counts.csv.gz.elsewhere-1-0123abcd.part",
        "other_host_old": ".counts.csv.gz.elsewhere-2-0123abcd.part",
        "old_style_old": ".counts.csv.gz.k3j_x9z1.part",
        "other_file": ".other.csv.gz.elsewhere-3-0123abcd.part",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 24 * 3600
    for key in ("other_host_old", "old_style_old"):
        os.utime(tmp_path / names[key], (two_days_ago, two_days_ago))
    removed = remove_stale_parts(dest)
    assert sorted(p.name for p in removed) == sorted(
        names[k] for k in ("dead", "other_host_old", "old_style_old")
    )
    assert _leftovers(tmp_path) == sorted(
        names[k] for k in ("live", "other_host_fresh", "other_file")
    )


def test_killed_download_leaves_a_part_the_next_attempt_removes(
    server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "dl" / "counts.csv.gz"
    code = (
        "import sys; from cordatlas.io.download import fetch_url; "
        "fetch_url(sys.argv[1], sys.argv[2], timeout=30, retries=1)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, _url(server, "/stall"), str(dest)])
    try:
        deadline = time.monotonic() + 20
        while not any(n.endswith(".part") for n in _leftovers(dest.parent)):
            assert time.monotonic() < deadline, "the child never started its download"
            assert child.poll() is None, "the child exited before it was killed"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    (part,) = _leftovers(dest.parent)
    assert f"-{child.pid}-" in part  # the killed process's part is still there
    with caplog.at_level(logging.WARNING, logger="cordatlas.io.download"):
        fetch_url(_url(server, "/data/counts.csv.gz"), dest, sha256=BODY_SHA)
    assert _leftovers(dest.parent) == ["counts.csv.gz"]
    assert f"removed {dest.parent / part}, left by an interrupted download" in caplog.text


# ---- the sample sheet: one url, one digest ------------------------------------------------
def test_rows_sharing_a_url_with_different_sha_are_refused() -> None:
    rows = [
        {"sample": "S1", "url": "https://x.org/pool.h5", "sha256": "A" * 64},
        {"sample": "S2", "url": "https://x.org/pool.h5", "sha256": "b" * 64},
        {"sample": "S3", "url": "https://x.org/other.h5", "sha256": "c" * 64},
    ]
    with pytest.raises(UserInputError) as info:
        check_shared_downloads(rows, sheet="config/mine.tsv")
    message = str(info.value)
    assert "config/mine.tsv" in message and "'https://x.org/pool.h5'" in message
    assert f"S1: {'a' * 64}" in message and f"S2: {'b' * 64}" in message
    assert "S3" not in message


def test_rows_sharing_a_url_with_one_digest_pass() -> None:
    nan = float("nan")
    rows = [
        {"sample": "S1", "url": "https://x.org/pool.h5", "sha256": "A" * 64},
        {"sample": "S2", "url": "https://x.org/pool.h5", "sha256": "a" * 64},  # case differs
        {"sample": "S3", "url": "https://x.org/pool.h5", "sha256": nan},  # NA: no digest given
        {"sample": "S4", "url": nan, "sha256": nan, "path": "local.h5"},
    ]
    check_shared_downloads(rows, sheet="config/mine.tsv")


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
