// Instantiates the wasm module in Node (>= 20) from the file beside this one.
import { readFile } from 'node:fs/promises';
import init from './wasm/kms_envelope.js';

await init({ module_or_path: await readFile(new URL('./wasm/kms_envelope_bg.wasm', import.meta.url)) });
