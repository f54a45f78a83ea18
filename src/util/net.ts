// Small network facts of this host.
import { createServer } from 'node:net';

/** A TCP port nobody listens on right now on 127.0.0.1 (the kernel's pick; another process may take it next). */
export function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
