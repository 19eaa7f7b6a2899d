"""A real OCI registry for the cache tests: Debian's docker-registry (CNCF distribution),
started on 127.0.0.1 with a free port and its own storage folder, stopped by the test.

Also a TCP relay in front of it that can stop relaying after a number of bytes sent to the
registry and kill the registry then: a registry that dies in the middle of an upload.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
REPOSITORY = "ci/ibtasks-cache"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRegistry:
    """docker-registry serving `storage` on 127.0.0.1:`port`, until `stop()`."""

    def __init__(self, storage: Path, port: int | None = None,
                 htpasswd: Path | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.storage = storage
        self.credentials = credentials  # what tags() and manifest() log in with
        self.port = port or free_port()
        self.config = storage.parent / f"registry-{self.port}.yml"
        # With `htpasswd` (bcrypt entries, `htpasswd -B`) every request needs Basic auth.
        auth = f"auth:\n  htpasswd:\n    realm: ibtasks-tests\n    path: {htpasswd}\n" \
            if htpasswd is not None else ""
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n" + auth)
        self.log = storage.parent / f"registry-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, host: str | None = None) -> str:
        """The `--cache` value of our repository (through `host` if given: a relay)."""
        return f"oci://{host or self.host}/{REPOSITORY}"

    def start(self) -> LocalRegistry:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([REGISTRY, "serve", str(self.config)],
                                            stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return self
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for credentials
                    return self
                raise
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {self.log.read_text()}") \
                        from None
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tags(self) -> list[str]:
        """The tags of our repository (each one cache entry), sorted; [] before any push."""
        try:
            with urllib.request.urlopen(self._request(f"/v2/{REPOSITORY}/tags/list"),
                                        timeout=10) as answer:
                return sorted(json.load(answer).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def manifest(self, tag: str) -> dict[str, object]:
        request = self._request(f"/v2/{REPOSITORY}/manifests/{tag}")
        request.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.load(answer))

    def _request(self, path: str) -> urllib.request.Request:
        request = urllib.request.Request(f"http://{self.host}{path}")
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return request

    def blob_file(self, digest: str) -> Path:
        """Where the registry stores blob `sha256:<hex>` (distribution's filesystem layout)."""
        hexdigest = digest.removeprefix("sha256:")
        return (self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
                / hexdigest[:2] / hexdigest / "data")


class Relay:
    """A TCP relay to `target` port on 127.0.0.1 counting the bytes clients send; once they
    pass `cut_after`, it calls `on_cut` (kill the registry) and drops every connection."""

    def __init__(self, target: int, cut_after: int | None = None,
                 on_cut: Callable[[], None] | None = None) -> None:
        self.target, self.cut_after, self.on_cut = target, cut_after, on_cut
        self.sent = 0
        self.cut = threading.Event()
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.cut.set()
        self.server.close()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()  # the registry is gone: the client sees a closed connection
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while not self.cut.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        if self.cut_after is not None and self.sent > self.cut_after:
                            if self.on_cut is not None and not self.cut.is_set():
                                self.on_cut()
                            self.cut.set()
                            self.server.close()
                            break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
