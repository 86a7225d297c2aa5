#!/usr/bin/env python3
"""A fault-injecting proxy in front of a KMS endpoint, for the gateway tests.

    kms_faults.py UPSTREAM_URL      prints "ready URL", serves until stdin closes

Requests are forwarded unchanged (every header, so SigV4 signatures hold). Faults apply to Decrypt calls only (but
`down`, which takes KMS away for every call) and are set with `POST /__faults` (JSON, every field optional):
    throttle: N       answer the next N Decrypts with ThrottlingException (-1: all)
    down: true        drop every connection without an answer
    delay: SECONDS    wait before forwarding
    wrongKeyId: true  answer another key's ARN as KeyId
    wrongPlaintext: true  flip a bit of the returned Plaintext
`GET /__faults` answers the counters {decrypts, throttled, forwarded, ops: {Operation: calls}}.
"""
import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from quiet_http import QuietHandler

UPSTREAM = sys.argv[1].rstrip("/")
lock = threading.Lock()
faults = {}
counters = {"decrypts": 0, "throttled": 0, "forwarded": 0, "ops": {}}


class Handler(QuietHandler):

    def do_GET(self):
        with lock:
            body = json.dumps(counters).encode()
        self.reply(200, body, [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/__faults":
            with lock:
                faults.clear()
                faults.update(json.loads(body or b"{}"))
                for k in counters:
                    counters[k] = {} if k == "ops" else 0
            return self.reply(204, b"")
        target = self.headers.get("X-Amz-Target", "")
        decrypt = target.endswith(".Decrypt")
        with lock:
            op = target.rsplit(".", 1)[-1]
            counters["ops"][op] = counters["ops"].get(op, 0) + 1
            f = dict(faults) if decrypt else {"down": faults.get("down")}
            if decrypt:
                counters["decrypts"] += 1
                n = f.get("throttle", 0)
                throttle = n != 0
                if n > 0:
                    faults["throttle"] = n - 1
                if throttle:
                    counters["throttled"] += 1
        if f.get("down"):
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if f.get("delay"):
            time.sleep(f["delay"])
        if decrypt and throttle:
            err = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return self.reply(400, err, [("Content-Type", "application/x-amz-json-1.1")])
        req = urllib.request.Request(UPSTREAM + self.path, data=body, method="POST")
        # Every header as received, Host included: the request stays signed.
        for k, v in self.headers.items():
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        with lock:
            counters["forwarded"] += 1
        if decrypt and status == 200 and (f.get("wrongKeyId") or f.get("wrongPlaintext")):
            j = json.loads(answer)
            if f.get("wrongKeyId"):
                j["KeyId"] = j["KeyId"][:-4] + "0000"
            if f.get("wrongPlaintext"):
                p = bytearray(base64.b64decode(j["Plaintext"]))
                p[0] ^= 1
                j["Plaintext"] = base64.b64encode(bytes(p)).decode()
            answer = json.dumps(j).encode()
        self.reply(status, answer, [("Content-Type", "application/x-amz-json-1.1")])


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"ready http://127.0.0.1:{server.server_address[1]}", flush=True)
sys.stdin.read()
