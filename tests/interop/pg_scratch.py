#!/usr/bin/env python3
"""A scratch PostgreSQL server for the tests (Debian's postgresql package).

    pg_scratch.py

makes a cluster in a temporary directory (as the `postgres` user when run
as root: the server refuses root), with password authentication
(SCRAM-SHA-256) and TLS (a CA and a certificate for 127.0.0.1 and
localhost made here), starts it on a free loopback port and prints

    ready URL CA_PEM

URL is postgres://kms_envelope:kms-test-password@127.0.0.1:PORT/postgres.
It then reads commands, one a line, until its stdin closes:

    db NAME  creates database NAME; answers "db URL" (URL of that database)
    stop     stops the server (fast shutdown); answers "stopped"
    start    starts it again on the same port; answers "started"

and then stops the server and removes the directory. Durability is off
(fsync, synchronous_commit): these databases live for one test.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

USER, PASSWORD = "kms_envelope", "kms-test-password"


def bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        sys.exit("PostgreSQL's server is not installed (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.bin = bindir()
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # The server's own user must reach the directory: a private TMPDIR
        # (the test runner's) would stop it at the first step of the path.
        self.dir = tempfile.mkdtemp(prefix="kms-envelope-pg-", dir="/tmp" if self.owner else None)
        if self.owner:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.proc = None

    def as_owner(self):
        """Run a child as the cluster's owner (when this runs as root)."""
        if not self.owner:
            return None
        uid, gid = self.owner.pw_uid, self.owner.pw_gid

        def drop():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return drop

    def run(self, args, **kw):
        return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, preexec_fn=self.as_owner(), cwd=self.dir, **kw)

    def own(self, path, mode):
        os.chmod(path, mode)
        if self.owner:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def certificates(self):
        d = self.dir
        ssl = lambda *a: subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=kms-envelope test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        key, csr, cert, ext = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.pem", "server.ext"))
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
        ssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        for p in (key, cert):
            self.own(p, 0o600)
        os.chmod(ca, 0o644)
        return ca, cert, key

    def init(self):
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD)
        self.own(pw, 0o600)
        self.run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={pw}", "-E", "UTF8", "--locale=C", "--no-sync"], stderr=subprocess.DEVNULL)
        os.remove(pw)
        self.ca, self.cert, self.key = self.certificates()

    def start(self):
        args = [os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.dir,
                "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", f"ssl_cert_file={self.cert}",
                "-c", f"ssl_key_file={self.key}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "log_min_messages=fatal"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=self.as_owner(), cwd=self.dir)
        ready = os.path.join(self.bin, "pg_isready")
        for _ in range(200):
            if self.proc.poll() is not None:
                sys.exit(f"postgres exited with {self.proc.returncode}")
            if subprocess.run([ready, "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0:
                return
            time.sleep(0.05)
        sys.exit("postgres did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown.
            self.proc.send_signal(2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def main():
    s = Server()
    try:
        s.init()
        s.start()
        url = lambda db: f"postgres://{USER}:{PASSWORD}@127.0.0.1:{s.port}/{db}"
        print(f"ready {url('postgres')} {s.ca}", flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd.startswith("db "):
                name = cmd[3:]
                env = dict(os.environ, PGPASSWORD=PASSWORD)
                subprocess.run([os.path.join(s.bin, "createdb"), "-h", "127.0.0.1", "-p", str(s.port), "-U", USER, name], check=True, env=env)
                print(f"db {url(name)}", flush=True)
            elif cmd == "stop":
                s.stop()
                print("stopped", flush=True)
            elif cmd == "start":
                s.start()
                print("started", flush=True)
    finally:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
