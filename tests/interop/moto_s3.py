#!/usr/bin/env python3
"""moto 5.2.5's S3 server for the tests, with a fault-injecting proxy in front.

    moto_s3.py serve [--bucket NAME] [--cors-origin ORIGIN ...] [--port N]

starts moto's server on 127.0.0.1 (a free port, or --port), creates the
bucket with a CORS rule for the given origins (PUT/GET, any header, ETag
exposed), starts the proxy on another free port, prints

    ready MOTO_URL PROXY_URL

and serves until its stdin closes. moto's answers to ListParts (and the
other serializer-made multipart answers) get the XML root S3 gives them,
completing a multipart upload costs one copy of the object, not six, and
a part or an object is held as the bytes received (no copy on every read).
The proxy forwards every request to
moto unchanged (presigned URLs made for the proxy's address work: moto
does not check signatures). It is steered at PROXY_URL/__faults:

    POST {"failPartPuts": N, "status": 503}  the next N part PUTs answer that status
    POST {"failGets": N}                     the next N object GETs answer 503
    POST {"down": true|false}                every request is answered by closing the connection
    GET                                      {"partPuts", "failedPuts", "bytesIn", "bytesOut", "down"}
"""

import argparse
import http.client
import json
import os
import socket
import sys
import threading
from http.server import ThreadingHTTPServer

from quiet_http import QuietHandler


# moto 5.2.5 names the XML root of the S3 answers its generic serializer
# makes `<Operation>Response`; S3 answers these roots (the Rust SDK checks).
S3_ROOTS = {
    "ListParts": "ListPartsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
}


def patch_moto():
    from moto.core import serialize

    plain = serialize.S3Serializer._serialize_body

    def serialize_body(self, body):
        op = self.operation_model.name
        if op in S3_ROOTS and list(body) == [f"{op}Response"]:
            body = {S3_ROOTS[op]: body[f"{op}Response"]}
        return plain(self, body)

    serialize.S3Serializer._serialize_body = serialize_body
    patch_complete()
    patch_buffers()


def patch_complete():
    """moto 5.2.5 assembles a completed multipart upload with half a dozen
    copies of the whole object (seconds for a few hundred MiB, on the cores
    the browser under test needs; S3 itself answers in milliseconds). This
    does the same checks and gives the same answer (the parts' ETags must
    match, every part but the last is at least 5 MiB, the ETag is the MD5 of
    the parts' MD5s with the part count, and the checksum of the whole), with
    one copy."""
    import hashlib

    from moto import settings
    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML

    def complete(self, body):
        values, md5s, last = [], bytearray(), None
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise InvalidPart()
            if last is not None and last.contentsize < settings.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s.extend(bytes.fromhex(part.etag.replace('"', "")))
            values.append(part.value)
            last = part
        if not values:
            raise MalformedXML
        whole = b"".join(values)
        checksum = models.MultipartChecksumBuilder(self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type"))
        if checksum.checksum_type == "COMPOSITE":
            for v in values:
                checksum.addPart(v)
        else:
            checksum.complete_object = whole
        etag = hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()
        return whole, f"{etag}-{len(values)}", checksum.build()

    models.FakeMultipart.complete = complete


class Held:
    """What moto keeps a key's value in, in place of its SpooledTemporaryFile
    (which copies the whole value on every read, and on every write): the
    bytes as received, handed out without a copy (bytes are immutable)."""

    def __init__(self, *_args, **_kwargs):
        self.data, self.pos = b"", 0

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else len(self.data) + pos)
        return self.pos

    def truncate(self, size=None):
        self.data = self.data[: self.pos if size is None else size]

    def write(self, b):
        b = bytes(b)
        self.data = b if self.pos == 0 and not self.data else self.data[: self.pos] + b + self.data[self.pos + len(b):]
        self.pos += len(b)
        return len(b)

    def read(self, n=-1):
        start = self.pos
        if start == 0 and (n is None or n < 0 or n >= len(self.data)):
            out = self.data
        else:
            out = self.data[start:] if n is None or n < 0 else self.data[start:start + n]
        self.pos = start + len(out)
        return out

    def close(self):
        self.data = b""


def patch_buffers():
    """moto 5.2.5 copies each part three to five times on its way in (the
    request body read 64 KiB at a time, the key's spooled buffer, its MD5
    read back in slices). Same answers with the bytes held once."""
    import hashlib
    import tempfile

    from moto.s3 import models
    from werkzeug import wsgi

    class Tempfile:
        """The `tempfile` module as moto's models see it: key buffers are `Held`."""

        SpooledTemporaryFile = Held

        def __getattr__(self, name):
            return getattr(tempfile, name)

    models.tempfile = Tempfile()

    def etag(self):
        if self._etag is None:
            self._etag = hashlib.md5(self._value_buffer.data, usedforsecurity=False).hexdigest()
        return f'"{self._etag}"'

    models.FakeKey.etag = property(etag)

    plain_readall = wsgi.LimitedStream.readall

    def readall(self):
        # A request body of known length is read into one buffer.
        left = self.limit - self._pos
        if left <= 0 or self._limit_is_max or not hasattr(self._stream, "readinto"):
            return plain_readall(self)
        out = bytearray(left)
        view, got = memoryview(out), 0
        while got < left:
            n = self.readinto(view[got:])
            if not n:
                break
            got += n
        return bytes(view[:got])

    wsgi.LimitedStream.readall = readall


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.fail_part_puts = 0
        self.fail_gets = 0
        self.status = 503
        self.down = False
        self.part_puts = 0
        self.failed_puts = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def state(self):
        with self.lock:
            return {"partPuts": self.part_puts, "failedPuts": self.failed_puts, "bytesIn": self.bytes_in, "bytesOut": self.bytes_out, "down": self.down}


def proxy_handler(upstream_port, faults):
    class Proxy(QuietHandler):

        def control(self):
            if self.command == "POST":
                req = json.loads(self.body() or b"{}")
                with faults.lock:
                    if "failPartPuts" in req:
                        faults.fail_part_puts = int(req["failPartPuts"])
                        faults.status = int(req.get("status", 503))
                    if "failGets" in req:
                        faults.fail_gets = int(req["failGets"])
                    if "down" in req:
                        faults.down = bool(req["down"])
            self.reply(200, json.dumps(faults.state()).encode(), [("Content-Type", "application/json")])

        def forward(self):
            if self.path.startswith("/__faults"):
                return self.control()
            with faults.lock:
                down = faults.down
            if down:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = self.body()
            part_put = self.command == "PUT" and "partNumber=" in self.path and "uploadId=" in self.path
            path, _, query = self.path.partition("?")
            object_get = self.command == "GET" and path.count("/") >= 2 and "uploads" not in query and "uploadId=" not in query
            with faults.lock:
                faults.bytes_in += len(body)
                if object_get and faults.fail_gets > 0:
                    faults.fail_gets -= 1
                    fail = 503
                elif part_put:
                    faults.part_puts += 1
                    if faults.fail_part_puts > 0:
                        faults.fail_part_puts -= 1
                        faults.failed_puts += 1
                        fail = faults.status
                    else:
                        fail = None
                else:
                    fail = None
            if fail:
                msg = b"<Error><Code>ServiceUnavailable</Code><Message>injected fault</Message></Error>"
                return self.reply(fail, msg, [("Content-Type", "application/xml")])
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            with faults.lock:
                faults.bytes_out += len(data)
            hop = ("connection", "keep-alive", "transfer-encoding", "content-length")
            self.reply(r.status, data if self.command != "HEAD" else b"", [(k, v) for k, v in r.getheaders() if k.lower() not in hop])
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = forward

    return Proxy


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bucket", default="kms-envelope-test")
    s.add_argument("--cors-origin", action="append", default=[])
    s.add_argument("--port", type=int, default=0)
    a = p.parse_args()

    # Keep objects and parts in memory: by default moto spools anything over
    # 5 MiB to a temporary file, which makes it the slowest part of a test.
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1 << 30))
    patch_moto()
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    import boto3

    port = a.port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=a.bucket)
    if a.cors_origin:
        s3.put_bucket_cors(
            Bucket=a.bucket,
            CORSConfiguration={"CORSRules": [{"AllowedOrigins": a.cors_origin, "AllowedMethods": ["PUT", "GET", "HEAD"], "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "Content-Range", "Content-Length"], "MaxAgeSeconds": 600}]},
        )
    faults = Faults()
    proxy = ThreadingHTTPServer(("127.0.0.1", free_port()), proxy_handler(port, faults))
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    print(f"ready {url} http://127.0.0.1:{proxy.server_address[1]}", flush=True)
    sys.stdin.read()
    proxy.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
