// The TCP ports listening in a machine's network namespace, read from the host through a process of
// the machine (/proc/<pid>/net/tcp{,6} show the tables of that process's network namespace).
import { readFile } from 'node:fs/promises';

const LISTEN = '0A';

/** Sorted, unique local ports of sockets in LISTEN state; [] when the process is gone. */
export async function listeningTcpPorts(pid: number): Promise<number[]> {
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      // "  sl  local_address rem_address   st ..." e.g. "0: 0100007F:1538 00000000:0000 0A ..."
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== LISTEN) continue;
      const port = Number.parseInt(fields[1]?.split(':').pop() ?? '', 16);
      if (Number.isInteger(port) && port > 0) ports.add(port);
    }
  }
  return [...ports].sort((a, b) => a - b);
}
