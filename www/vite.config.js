// Builds the demo app from app/ into dist/, served by `kms-envelope serve --web-dir www/dist`.
import { defineConfig } from 'vite';

export default defineConfig({
  root: 'app',
  base: './',
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    // No inline scripts or data: URLs (the gateway's CSP allows 'self' only).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  worker: { format: 'es' },
});
