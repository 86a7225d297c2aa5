// A worker of kms-envelope's WorkerPool. It runs AES-GCM (WebCrypto) on a
// batch of frames for the thread that owns the message; that thread lays
// out every frame (sequence numbers, IVs, AADs) and keeps their order. The
// non-extractable CryptoKey comes with each batch and is not kept.
//
// Request: { id, op: 'encrypt' | 'decrypt', key, data, lens, ivs, aads, aadLens }
// Answer:  { id, out: ArrayBuffer[], back } (transferred; `back` is the
//          request's buffer, handed back for reuse), or { id, error }.
self.onmessage = async ({ data: m }) => {
  const { id, op, key, data, lens, ivs, aads, aadLens } = m;
  try {
    const subtle = crypto.subtle;
    const jobs = new Array(lens.length);
    for (let i = 0, off = 0, a = 0; i < lens.length; off += lens[i], a += aadLens[i], i++) {
      const params = { name: 'AES-GCM', iv: ivs.subarray(12 * i, 12 * i + 12), additionalData: aads.subarray(a, a + aadLens[i]), tagLength: 128 };
      const bytes = data.subarray(off, off + lens[i]);
      jobs[i] = op === 'encrypt' ? subtle.encrypt(params, key, bytes) : subtle.decrypt(params, key, bytes);
    }
    const out = await Promise.all(jobs);
    const back = data.buffer;
    self.postMessage({ id, out, back }, [...out, back]);
  } catch (e) {
    self.postMessage({ id, error: (e && e.name) || 'Error' });
  }
};
