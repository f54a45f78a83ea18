// The web UI's build: src/ui -> dist/ui, served by `strata serve` at `/`.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  build: { outDir: fileURLToPath(new URL('../../dist/ui', import.meta.url)), emptyOutDir: true, sourcemap: true },
  server: { proxy: { '/api': 'http://127.0.0.1:7080', '/preview': 'http://127.0.0.1:7080' } },
});
