"""Download input files once: sha256-checked, atomic, cached by url (standard library only)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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


class DownloadError(UserInputError):
    """A download that failed or did not match its sha256 (no file is left behind)."""


class _IncompleteBody(OSError):
    """The connection ended before Content-Length bytes arrived."""


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


def _stream_to(url: str, handle: BinaryIO, *, timeout: float) -> tuple[str, int]:
    """Write the body at `url` into `handle`; returns (sha256 hex, bytes written)."""
    digest = hashlib.sha256()
    written = 0
    request = urllib.request.Request(url, headers={"User-Agent": "cordatlas-download"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    # http.client returns a short body without error when the peer closes early; catch it here.
    if expected is not None and expected.isdigit() and written != int(expected):
        raise _IncompleteBody(f"connection closed after {written} of {expected} bytes")
    return digest.hexdigest(), written


def _is_final(exc: BaseException, scheme: str) -> bool:
    if scheme == "file":
        return True
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code not in RETRYABLE_HTTP
    return False


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
    request. Otherwise the body is streamed into a temporary file next to `dest` while its
    sha256 is computed, checked against `sha256`, and moved into place with `os.replace`. Any
    failure (HTTP error, dropped connection, timeout, digest mismatch) leaves neither `dest`
    nor a temporary file.

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
        Attempts in all; HTTP 4xx (except 408/425/429) and file:// errors are not retried.

    Returns
    -------
    `dest`.

    Raises
    ------
    DownloadError
        (a UserInputError) naming the url and, for a mismatch, both digests.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(
            f"url {url!r} has scheme {scheme!r}; use one of {', '.join(SCHEMES)} in the "
            "sample sheet's `url`"
        )
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    expected = sha256.strip().lower() if sha256 else None
    if dest.is_file():
        if expected is None:
            log.info("using cached %s for %s", dest, url)
            return dest
        actual = file_sha256(dest)
        if actual == expected:
            log.info("using cached %s for %s (sha256 ok)", dest, url)
            return dest
        log.warning(
            "cached %s has sha256 %s, expected %s: downloading again", dest, actual, expected
        )
    dest.parent.mkdir(parents=True, exist_ok=True)

    last_error: BaseException | None = None
    for attempt in range(1, retries + 1):
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                actual, size = _stream_to(url, handle, timeout=timeout)
                handle.flush()
                os.fsync(handle.fileno())
            if expected is not None and actual != expected:
                raise DownloadError(
                    f"download of {url} has sha256 {actual} but the sample sheet expects "
                    f"{expected}; fix `sha256` (or `url`) in the sample sheet"
                )
            os.replace(tmp, dest)
            log.info("downloaded %s (%d bytes, sha256 %s) to %s", url, size, actual, dest)
            return dest
        except DownloadError:
            raise  # a digest mismatch is final: the file is what the server serves
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = exc
            log.warning("attempt %d/%d to download %s failed: %s", attempt, retries, url, exc)
            if _is_final(exc, scheme) or attempt == retries:
                break
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
        finally:
            # Any failure, including one not caught above, leaves no temporary file behind.
            tmp.unlink(missing_ok=True)
    raise DownloadError(
        f"download of {url} failed after {attempt} attempt(s): {last_error}; check `url` in the "
        f"sample sheet and the network, or place the file at {dest} by hand"
    ) from last_error
