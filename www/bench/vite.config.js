// The AWS Encryption SDK for browsers still imports Node's `buffer` (through
// safer-buffer), as bundlers used to polyfill; give it the browser package.
export default {
  resolve: { alias: { buffer: 'buffer/' } },
  define: { global: 'globalThis' },
};
