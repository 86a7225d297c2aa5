// Native part of `make bench`: the same 256 MiB file encrypted and decrypted
// (raw RSA-2048 OAEP-SHA256, suite 0x0478, 64 KiB frames) by the
// kms-envelope CLI, the library in-process (both AES-GCM backends), the
// Python ESDK and @aws-crypto/client-node, beside `openssl speed` as the
// AES-GCM ceiling of this machine; all in one run.
//
//   node scripts/bench-native.mjs [sizeMiB=256] [runs=5]   → prints JSON
//
// Peers run as processes (tests/interop/peer.py, peer.mjs) on files; their
// start-up time is measured with an empty batch and subtracted.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [sizeMiB = 256, runs = 5] = process.argv.slice(2).map(Number);
const bin = join(root, 'target/release/kms-envelope');
const keys = join(root, 'tests/vectors/keys');
const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-native-bench-'));
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e9;
const mib = (secs) => +(sizeMiB / secs).toFixed(1);
const sha = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');

// Incompressible input, written in 16 MiB pieces.
const input = join(dir, 'input');
{
  const fd = openSync(input, 'w');
  const buf = Buffer.alloc(16 << 20);
  for (let left = sizeMiB << 20; left > 0; left -= buf.length) writeSync(fd, randomFillSync(buf), 0, Math.min(buf.length, left));
  closeSync(fd);
}
const want = sha(input);

function timed(fn) {
  fn(); // warm-up (and page cache)
  const t = [];
  for (let i = 0; i < runs; i++) {
    const s = now();
    fn();
    t.push(now() - s);
  }
  return median(t);
}
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
};
const rows = [];
const machine = () => ({ loadavg1: +loadavg()[0].toFixed(2) });

// The CLI (aws-lc-rs AES-GCM), file to file.
{
  const ct = join(dir, 'cli.esdk'), back = join(dir, 'cli.out');
  const spec = `namespace=kms-envelope-test,name=rsa-2048,public=${keys}/rsa-2048.pub.pem,padding=oaep-sha256`;
  const dspec = `namespace=kms-envelope-test,name=rsa-2048,private=${keys}/rsa-2048.pem,padding=oaep-sha256`;
  const before = machine();
  const enc = timed(() => run(bin, ['encrypt', '-i', input, '-o', ct, '--raw-rsa', spec, '--frame-length', '65536']));
  const dec = timed(() => run(bin, ['decrypt', '-i', ct, '-o', back, '--raw-rsa', dspec]));
  if (sha(back) !== want) throw new Error('the CLI did not round-trip');
  rows.push({ name: 'kms-envelope CLI (file to file, aws-lc-rs)', encrypt: mib(enc), decrypt: mib(dec), overheadBytes: statSync(ct).size - (sizeMiB << 20), streams: true, machine: before });
  // The same to stdout (/dev/null): what the file output's fsync and rename cost.
  const devnull = openSync('/dev/null', 'w');
  const toNull = { stdio: ['ignore', devnull, 'pipe'] };
  const before2 = machine();
  const enc2 = timed(() => run(bin, ['encrypt', '-i', input, '-o', '-', '--raw-rsa', spec, '--frame-length', '65536'], toNull));
  const dec2 = timed(() => run(bin, ['decrypt', '-i', ct, '-o', '-', '--raw-rsa', dspec], toNull));
  closeSync(devnull);
  rows.push({ name: 'kms-envelope CLI (file to /dev/null: no fsync)', encrypt: mib(enc2), decrypt: mib(dec2), overheadBytes: statSync(ct).size - (sizeMiB << 20), streams: true, machine: before2 });
}

// The library in-process.
for (const line of run('cargo', ['run', '--quiet', '--release', '-p', 'kms-envelope-server', '--example', 'native_bench', '--', String(sizeMiB), String(runs)], { cwd: root }).trim().split('\n')) {
  const r = JSON.parse(line);
  rows.push({ name: `kms-envelope library, one-shot (${r.backend})`, encrypt: r.encrypt, decrypt: r.decrypt, overheadBytes: r.overheadBytes, streams: false, machine: machine() });
  rows.push({ name: `kms-envelope library, streaming 1 MiB chunks (${r.backend})`, encrypt: r.encryptStream, decrypt: r.decryptStream, overheadBytes: r.overheadBytes, streams: true, machine: machine() });
}

// The official SDKs, through the interop peers (one job per process).
function peer(name, cmd, script) {
  const jobs = (op, inp, out) => {
    const f = join(dir, `${name}-${op}.json`);
    writeFileSync(f, JSON.stringify({ jobs: op ? [{ op, keyring: 'raw-rsa-oaep-sha256-2048', suite: '0x0478', frame_length: 65536, context: {}, policy: 'require-encrypt-require-decrypt', input: inp, output: out }] : [] }));
    return f;
  };
  const res = join(dir, `${name}-results.json`);
  const call = (f) => {
    run(cmd, [script, keys, f, res]);
    const r = JSON.parse(readFileSync(res, 'utf8'));
    if (r.some((x) => !x.ok)) throw new Error(`${name}: ${JSON.stringify(r)}`);
  };
  const ct = join(dir, `${name}.esdk`), back = join(dir, `${name}.out`);
  const before = machine();
  const startup = timed(() => call(jobs(null)));
  const enc = timed(() => call(jobs('encrypt', input, ct))) - startup;
  const dec = timed(() => call(jobs('decrypt', ct, back))) - startup;
  if (sha(back) !== want) throw new Error(`${name} did not round-trip`);
  // Interop on the bench file too: ours decrypts theirs.
  run(bin, ['decrypt', '-i', ct, '-o', join(dir, 'x.out'), '--raw-rsa', `namespace=kms-envelope-test,name=rsa-2048,private=${keys}/rsa-2048.pem,padding=oaep-sha256`]);
  if (sha(join(dir, 'x.out')) !== want) throw new Error(`kms-envelope did not decrypt ${name}'s output`);
  return { encrypt: mib(enc), decrypt: mib(dec), overheadBytes: statSync(ct).size - (sizeMiB << 20), startupSeconds: +startup.toFixed(2), machine: before };
}
rows.push({ name: 'Python aws-encryption-sdk 4.0.7 (file to file)', streams: true, ...peer('python', join(root, '.venv/bin/python'), join(root, 'tests/interop/peer.py')) });
rows.push({ name: '@aws-crypto/client-node 5.0.2 (file to file)', streams: true, ...peer('node', 'node', join(root, 'tests/interop/peer.mjs')) });

// The hardware ceiling: OpenSSL's AES-256-GCM on 64 KiB buffers.
const speed = run('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', '65536', '-seconds', '3'], { stdio: ['ignore', 'pipe', 'ignore'] });
const k = Number(speed.trim().split('\n').pop().trim().split(/\s+/).pop().replace('k', ''));
const ceiling = +((k * 1000) / (1 << 20)).toFixed(1);
const version = run('openssl', ['version']).trim();
rmSync(dir, { recursive: true, force: true });
for (const r of rows) {
  r.encryptRatio = +(r.encrypt / ceiling).toFixed(2);
  r.decryptRatio = +(r.decrypt / ceiling).toFixed(2);
}
console.log(JSON.stringify({ sizeMiB, runs, ceiling: { name: `${version}, speed -evp aes-256-gcm, 64 KiB`, mibPerSecond: ceiling }, rows }, null, 1));
