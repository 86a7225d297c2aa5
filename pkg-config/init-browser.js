// Instantiates the wasm module in browsers, workers and bundlers: the .wasm
// file sits beside this one (bundlers copy it for `new URL(…, import.meta.url)`).
import init from './wasm/kms_envelope.js';

await init({ module_or_path: new URL('./wasm/kms_envelope_bg.wasm', import.meta.url) });
