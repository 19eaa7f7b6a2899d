"""A client of the OCI distribution API (blobs and manifests of one repository), on requests.

Blobs are uploaded in chunks (POST, PATCH with Content-Range, PUT ?digest=), so memory stays
bounded by CHUNK whatever the file's size, and only after a HEAD says the registry lacks them;
downloads stream to a file while hashing. The registry verifies each blob's sha256 and refuses a
manifest whose blobs are missing; we verify what we download. Authentication: HTTP Basic, or
the Bearer token flow of the distribution spec's token authentication (a realm that hands out
a token for `repository:<name>:pull,push`), with the credentials of `credentials.py`.
"""

from __future__ import annotations

import hashlib
import re
from typing import IO, Any
from urllib.parse import urljoin

import requests

from ibtasks.cache.credentials import registry_credentials
from ibtasks.cache.location import CacheLocation

CHUNK = 8 << 20  # bytes per PATCH and per read: the peak memory of an upload
READ = 1 << 20  # bytes per read while downloading
TIMEOUT = (10.0, 120.0)  # seconds: connect, then between bytes
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST = 4 << 20  # the distribution registry's own limit on a manifest's size


class CacheError(Exception):
    """A cache operation failed (unreachable, refused, corrupt): the task builds instead."""


class Registry:
    """One repository of one registry (`location`); credentials from `environ`."""

    def __init__(self, location: CacheLocation, environ: dict[str, str]) -> None:
        self.location = location
        self.base = f"{location.scheme}://{location.host}/v2/{location.repository}/"
        self.credentials = registry_credentials(location.host, environ)
        self.session = requests.Session()
        self.session.trust_env = True  # HTTPS_PROXY / NO_PROXY, as docker reads them
        self.uploaded = 0  # blob bytes sent by this client

    def close(self) -> None:
        self.session.close()

    # ---- blobs ----------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """Whether the repository holds blob `digest` (`sha256:<hex>`)."""
        response = self._send("HEAD", f"blobs/{digest}")
        if response.status_code == 404:
            return False
        self._expect(response, 200, f"HEAD blob {digest}")
        return True

    def push_blob(self, source: IO[bytes], digest: str, size: int) -> int:
        """Upload `size` bytes of `source` as blob `digest` in CHUNK-sized PATCHes, unless the
        registry has it already. Returns the bytes sent (0 when it was there)."""
        if self.has_blob(digest):
            return 0
        response = self._send("POST", "blobs/uploads/")
        self._expect(response, 202, "start of a blob upload")
        where = self._location(response)
        sent = 0
        while sent < size:
            data = source.read(min(CHUNK, size - sent))
            if not data:
                raise CacheError(f"blob {digest}: the file ended after {sent} of {size} bytes")
            response = self._send("PATCH", where, data=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{sent}-{sent + len(data) - 1}",
                "Content-Length": str(len(data))})
            self._expect(response, 202, f"upload of blob {digest}")
            where = self._location(response)
            sent += len(data)
            self.uploaded += len(data)
        glue = "&" if "?" in where else "?"
        response = self._send("PUT", f"{where}{glue}digest={digest}",
                              headers={"Content-Length": "0"})
        self._expect(response, 201, f"end of the upload of blob {digest}")
        return sent

    def pull_blob(self, digest: str, size: int, out: IO[bytes]) -> None:
        """Write blob `digest` of `size` bytes to `out`, streamed; CacheError when the bytes
        received are not that size or do not have that sha256 (a corrupt store)."""
        response = self._send("GET", f"blobs/{digest}", stream=True)
        try:
            self._expect(response, 200, f"GET blob {digest}")
            hasher = hashlib.sha256()
            got = 0
            for data in response.iter_content(READ):
                got += len(data)
                if got > size:
                    break
                hasher.update(data)
                out.write(data)
        except requests.RequestException as exc:
            raise CacheError(f"GET blob {digest}: {exc}") from exc
        finally:
            response.close()
        if got != size or f"sha256:{hasher.hexdigest()}" != digest:
            raise CacheError(f"blob {digest} is corrupt in the registry "
                             f"({got} bytes received, {size} expected, other content)")

    # ---- manifests ------------------------------------------------------------------------

    def get_manifest(self, tag: str) -> dict[str, Any] | None:
        """The OCI image manifest tagged `tag`, or None when there is none."""
        response = self._send("GET", f"manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if response.status_code == 404:
            return None
        self._expect(response, 200, f"GET manifest {tag}")
        if len(response.content) > MAX_MANIFEST:
            raise CacheError(f"manifest {tag}: larger than {MAX_MANIFEST} bytes")
        digest = response.headers.get("Docker-Content-Digest")
        if digest and digest != "sha256:" + hashlib.sha256(response.content).hexdigest():
            raise CacheError(f"manifest {tag}: its bytes do not match its digest {digest}")
        try:
            manifest = response.json()
        except ValueError as exc:
            raise CacheError(f"manifest {tag}: not JSON") from exc
        if not isinstance(manifest, dict):
            raise CacheError(f"manifest {tag}: not a JSON object")
        return manifest

    def put_manifest(self, tag: str, body: bytes) -> None:
        """Tag `body` (an OCI image manifest) as `tag`; the registry refuses it unless every
        blob it names is there."""
        response = self._send("PUT", f"manifests/{tag}", data=body,
                              headers={"Content-Type": OCI_MANIFEST})
        self._expect(response, 201, f"PUT manifest {tag}")

    # ---- HTTP ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = urljoin(self.base, path)
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
            if response.status_code == 401 and self._authenticate(response):
                response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise CacheError(f"{method} {url}: {_reason(exc)}") from exc
        return response

    def _authenticate(self, response: requests.Response) -> bool:
        """Answer a 401's challenge (Basic or Bearer); False when there is nothing to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None or self.session.auth is not None:
                return False
            self.session.auth = self.credentials
            return True
        if scheme.lower() != "bearer" or "Authorization" in self.session.headers:
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            return False
        query = {"service": fields.get("service", ""),
                 "scope": fields.get("scope") or
                 f"repository:{self.location.repository}:pull,push"}
        token = requests.get(fields["realm"], params=query, auth=self.credentials,
                             timeout=TIMEOUT)
        if token.status_code != 200:
            raise CacheError(f"token from {fields['realm']}: HTTP {token.status_code}")
        body = token.json()
        value = body.get("token") or body.get("access_token")
        if not value:
            raise CacheError(f"token from {fields['realm']}: no token in the answer")
        self.session.headers["Authorization"] = f"Bearer {value}"
        return True

    def _location(self, response: requests.Response) -> str:
        where = response.headers.get("Location")
        if not where:
            raise CacheError(f"{response.request.method} {response.url}: no Location header")
        return urljoin(response.url, where)

    @staticmethod
    def _expect(response: requests.Response, status: int, what: str) -> None:
        if response.status_code != status:
            detail = response.text[:200].strip().replace("\n", " ") if not response.raw or \
                response.request.method != "HEAD" else ""
            raise CacheError(f"{what}: HTTP {response.status_code}"
                             + (f" ({detail})" if detail else ""))


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause of a requests error, short (`Connection refused`)."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or type(cause).__name__
    match = re.search(r"\[Errno -?\d+\] ([^')]+)", text)
    return match.group(1) if match else text[:200]

