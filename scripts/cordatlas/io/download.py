"""Download input files once: sha256-checked, atomic, cached by url (standard library only).

A body is trusted as complete only when its length is proven: by the sha256 the sample sheet
gives, by Content-Length, by chunked transfer encoding's end marker, or (a server sending none
of these) by a second transfer giving the same bytes. Final errors (a wrong sha256, HTTP 4xx) are
never retried; transient ones (a dropped or stalled connection, HTTP 5xx) are.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: URL schemes `fetch_url` accepts.
SCHEMES = ("http", "https", "file")
#: Bytes read per chunk while streaming (1 MiB).
CHUNK_BYTES = 1 << 20
#: Seconds to wait before retry n (n = 1, 2, ...) is this times 2 ** (n - 1).
RETRY_BACKOFF_S = 1.0
#: HTTP statuses worth retrying (timeouts, throttling, server-side trouble); other 4xx are final.
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
#: A hidden part file untouched this long is stale whoever wrote it (a live transfer writes to
#: its part continually; one from a killed job on another host can only be judged by age).
STALE_PART_S = 24 * 3600.0


class DownloadError(UserInputError):
    """A download that failed or did not match its sha256 (no file is left behind)."""


class _IncompleteBody(OSError):
    """The connection ended before Content-Length bytes arrived."""


@dataclass(frozen=True)
class _Transfer:
    """One body written to a hidden part file next to its destination."""

    part: Path
    sha256: str
    size: int
    framed: bool  # its length was proven by Content-Length or chunked encoding


def cache_path(url: str, cache_dir: Path | str) -> Path:
    """Where `url` is cached: ``cache_dir / <16 hex of sha256(url)> / <basename of url path>``.

    The basename keeps its extensions (``.h5``, ``.csv.gz``, ``.tar.gz``) so format detection
    works on the cached file; characters outside ``[A-Za-z0-9._-]`` become ``_``. A url whose
    path has no basename is cached as ``download``.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(path).name).lstrip(".")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / digest / (name or "download")


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_shared_downloads(rows: Iterable[Mapping[str, Any]], *, sheet: str | Path) -> None:
    """Refuse sample-sheet rows that share one `url` but give different `sha256` values.

    One url is one cached file, so at most one digest can hold for it; the check runs when the
    sheet is read, before any job. Rows are mappings with `sample`, `url` and `sha256` (missing,
    empty or NA values count as absent); digests compare case-insensitively.

    Raises
    ------
    UserInputError
        Naming the sheet, the url, and each sample with the digest it gives.
    """
    digests: dict[str, dict[str, str]] = {}
    for row in rows:
        url, sha = row.get("url"), row.get("sha256")
        if isinstance(url, str) and url and isinstance(sha, str) and sha:
            digests.setdefault(url, {})[str(row.get("sample"))] = sha.strip().lower()
    for url, by_sample in digests.items():
        if len(set(by_sample.values())) > 1:
            given = ", ".join(f"{sample}: {sha}" for sample, sha in by_sample.items())
            raise UserInputError(
                f"sample sheet {sheet}: rows sharing url {url!r} give different sha256 ({given}); "
                "one url is one file, so give its one sha256 in every row (or leave it empty in all "
                "but one)"
            )


def fetch_url(
    url: str,
    dest: Path | str,
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download `url` to `dest` once, atomically, checking its sha256.

    If `dest` exists and `sha256` is None or matches it, `dest` is returned without any network
    request. Otherwise stale part files of killed downloads are removed and the body is
    streamed into a hidden part file named for this host and process, its sha256 computed,
    and the part moved into place with `os.replace` (readable as the umask allows, 0644 under
    umask 022) once the body is proven complete: by `sha256`, else by Content-Length or chunked
    encoding, else by a second transfer giving the same size and sha256. Any failure leaves
    neither `dest` nor a part file.

    Parameters
    ----------
    url
        http://, https:// or file:// address.
    dest
        Final path; its directory is created.
    sha256
        Expected hex digest (case-insensitive); None skips the check.
    timeout
        Seconds a connection or a single read may stall.
    retries
        Attempts per transfer in all. Only transient errors are retried (a dropped, reset or
        stalled connection, HTTP 408/425/429/5xx, a wrong digest on a body of unproven length);
        HTTP 4xx, a wrong digest on a complete body and file:// errors are final.

    Returns
    -------
    `dest`.

    Raises
    ------
    DownloadError
        (a UserInputError) naming the url, what went wrong and what to do.
    """
    dest = Path(dest)
    scheme = _check_scheme(url)
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    expected = sha256.strip().lower() if sha256 else None
    if _cached(dest, url, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_parts(dest):
        log.warning("removed %s, left by an interrupted download", stale)
    transfer = _transfer_with_retries(url, dest, scheme, expected, timeout=timeout, retries=retries)
    try:
        if expected is None and not transfer.framed:
            _confirm_unframed(url, dest, scheme, transfer, timeout=timeout, retries=retries)
        os.replace(transfer.part, dest)
    finally:
        transfer.part.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes, sha256 %s) to %s", url, transfer.size, transfer.sha256, dest)
    return dest


def _check_scheme(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(
            f"url {url!r} has scheme {scheme!r}; use one of {', '.join(SCHEMES)} in the "
            "sample sheet's `url`"
        )
    return scheme


def _cached(dest: Path, url: str, expected: str | None) -> bool:
    """Whether `dest` already holds the file (a wrong digest means download again)."""
    if not dest.is_file():
        return False
    if expected is None:
        log.info("using cached %s for %s", dest, url)
        return True
    actual = file_sha256(dest)
    if actual == expected:
        log.info("using cached %s for %s (sha256 ok)", dest, url)
        return True
    log.warning("cached %s has sha256 %s, expected %s: downloading again", dest, actual, expected)
    return False


# --------------------------------------------------------------------------------------------
# Part files: one per host and process, stale ones removed by the next attempt
# --------------------------------------------------------------------------------------------
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _part_pattern(dest: Path) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(dest.name)}\.(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[0-9a-f]{{8}}\.part$"
    )


def _new_part(dest: Path) -> tuple[int, Path]:
    """A new, empty part file for `dest`; mode 0666 less the umask, as any new file gets."""
    part = dest.parent / f".{dest.name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.part"
    return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), part


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_parts(dest: Path | str, *, now: float | None = None) -> list[Path]:
    """Remove the hidden part files of interrupted downloads of `dest`; returns those removed.

    A part is stale when the process named in it (on this host) is gone, or when nobody wrote
    to it for :data:`STALE_PART_S` (a part from another host, or from an older naming). A part
    being written by a live process stays.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    now = time.time() if now is None else now
    pattern, host = _part_pattern(dest), _host()
    removed = []
    for part in dest.parent.iterdir():
        if not (part.name.startswith(f".{dest.name}.") and part.name.endswith(".part")):
            continue
        match = pattern.match(part.name)
        dead = match is not None and match["host"] == host and not _pid_alive(int(match["pid"]))
        try:
            old = now - part.stat().st_mtime > STALE_PART_S
        except FileNotFoundError:
            continue  # its writer just finished or removed it
        if dead or old:
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


# --------------------------------------------------------------------------------------------
# Transfers: stream into a part, retry transient errors only
# --------------------------------------------------------------------------------------------
def _stream_to_part(url: str, dest: Path, *, timeout: float) -> _Transfer:
    """One transfer of `url` into a new part file (removed again on any failure)."""
    fd, part = _new_part(dest)
    try:
        digest, written = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": "cordatlas-download"})
        with os.fdopen(fd, "wb") as handle:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                chunked = getattr(response, "chunked", False)
                # http.client raises IncompleteRead when a chunked body ends without its
                # end marker, but returns a short body quietly when Content-Length is not met.
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if length is not None and length.isdigit() and written != int(length):
            raise _IncompleteBody(f"connection closed after {written} of {length} bytes")
        framed = bool(chunked) or (length is not None and length.isdigit())
        return _Transfer(part, digest.hexdigest(), written, framed)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _is_final(exc: BaseException, scheme: str) -> bool:
    if scheme == "file":
        return True
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code not in RETRYABLE_HTTP
    return False


def _mismatch(url: str, actual: str, expected: str) -> DownloadError:
    return DownloadError(
        f"download of {url} has sha256 {actual} but the sample sheet expects {expected}; fix "
        "`sha256` (or `url`) in the sample sheet"
    )


def _transfer_with_retries(
    url: str, dest: Path, scheme: str, expected: str | None, *, timeout: float, retries: int
) -> _Transfer:
    """A transfer whose digest matches `expected` (when given), transient errors retried."""
    last_error: BaseException | None = None
    for attempt in range(1, retries + 1):
        try:
            transfer = _stream_to_part(url, dest, timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = exc
            if _is_final(exc, scheme):
                break
        else:
            if expected is None or transfer.sha256 == expected:
                return transfer
            transfer.part.unlink(missing_ok=True)
            if transfer.framed or scheme == "file":
                raise _mismatch(url, transfer.sha256, expected)  # the file is what is served
            # Without a proven length a wrong digest may be a cut transfer: try again.
            last_error = DownloadError(
                f"download of {url} has sha256 {transfer.sha256} ({transfer.size} bytes) but the "
                f"sample sheet expects {expected}, in each of {retries} attempt(s); the server "
                "sends no length, so a transfer cut short would look the same. Fix `sha256` (or "
                "`url`) in the sample sheet, or check the server"
            )
        if attempt < retries:  # the last failure is raised below, not logged twice
            log.warning(
                "attempt %d/%d to download %s failed (%s); retrying",
                attempt,
                retries,
                url,
                _describe(last_error, timeout),
            )
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
    if isinstance(last_error, DownloadError):
        raise last_error
    raise DownloadError(
        f"download of {url} failed after {attempt} attempt(s): {_describe(last_error, timeout)}; "
        f"check `url` in the sample sheet and the network, or place the file at {dest} by hand"
    ) from last_error


def _describe(exc: BaseException | None, timeout: float) -> str:
    """The last error in words: the HTTP status, a stall, or the exception."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"the server sent nothing for {timeout:g} s (timed out)"
    if isinstance(exc, DownloadError):
        return "sha256 differs from the sample sheet's, on a body of unproven length"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    if isinstance(exc, _IncompleteBody):
        return f"the {exc}"
    if isinstance(exc, http.client.IncompleteRead):
        return (
            "the connection closed before the chunked body's end marker "
            f"({len(exc.partial)} bytes read)"
        )
    return f"{type(exc).__name__}: {exc}"


def _confirm_unframed(
    url: str, dest: Path, scheme: str, first: _Transfer, *, timeout: float, retries: int
) -> None:
    """Prove an unframed body complete by a second transfer with the same size and sha256."""
    log.info(
        "%s sent neither Content-Length nor chunked encoding; downloading it a second time to "
        "prove the %d bytes complete (give `sha256` in the sample sheet to skip this)",
        url,
        first.size,
    )
    second = _transfer_with_retries(url, dest, scheme, None, timeout=timeout, retries=retries)
    second.part.unlink(missing_ok=True)
    if (second.size, second.sha256) != (first.size, first.sha256):
        raise DownloadError(
            f"download of {url}: the server sends neither Content-Length nor chunked encoding, "
            f"so a cut transfer cannot be told from a complete one, and two transfers differ "
            f"({first.size} bytes, sha256 {first.sha256}; {second.size} bytes, sha256 "
            f"{second.sha256}); set `sha256` for this url in the sample sheet (from a copy you "
            f"checked), or place the file at {dest} by hand"
        )
