// A job's events: appended to `<store>/jobs/<jobId>/events.ndjson` (one JSON object per line: the event
// plus its `seq`) and handed to live subscribers. Appends are synchronous, so a subscriber that reads the
// file and then registers (in one turn of the event loop) misses nothing and sees nothing twice.
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { JobEvent } from '../api/types.js';

export interface StoredEvent {
  seq: number;
  event: JobEvent;
}

type Listener = (seq: number, event: JobEvent) => void;

interface OpenLog {
  fd: number;
  lastSeq: number;
}

export class JobEventLog {
  private readonly open = new Map<string, OpenLog>();
  private readonly listeners = new Map<string, Set<Listener>>();

  /** `root`: the directory holding one folder per job (`<store>/jobs`). */
  constructor(private readonly root: string) {}

  file(jobId: string): string {
    return join(this.root, jobId, 'events.ndjson');
  }

  /** Appends an event and publishes it; `sync` fsyncs the file (at runner and job ends). */
  append(jobId: string, event: JobEvent, options: { sync?: boolean } = {}): number {
    const log = this.opened(jobId);
    const seq = ++log.lastSeq;
    writeSync(log.fd, `${JSON.stringify({ seq, ...event })}\n`);
    if (options.sync) fsyncSync(log.fd);
    for (const listener of this.listeners.get(jobId) ?? []) {
      try {
        listener(seq, event);
      } catch {
        // A subscriber's failure (a closed connection) must not break the job.
      }
    }
    return seq;
  }

  /** Closes the job's file (it is reopened if more events come, e.g. after a re-queue). */
  close(jobId: string): void {
    const log = this.open.get(jobId);
    if (!log) return;
    fsyncSync(log.fd);
    closeSync(log.fd);
    this.open.delete(jobId);
  }

  closeAll(): void {
    for (const jobId of [...this.open.keys()]) this.close(jobId);
  }

  /** The stored events with seq > afterSeq. A torn last line (a crash mid-write) is skipped. */
  read(jobId: string, afterSeq = 0): StoredEvent[] {
    const file = this.file(jobId);
    if (!existsSync(file)) return [];
    const events: StoredEvent[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line === '') continue;
      let parsed: { seq: number } & JobEvent;
      try {
        parsed = JSON.parse(line) as { seq: number } & JobEvent;
      } catch {
        continue;
      }
      const { seq, ...event } = parsed;
      if (seq > afterSeq) events.push({ seq, event: event as JobEvent });
    }
    return events;
  }

  /** Every stored event after `afterSeq`, then live ones until the returned function is called. */
  subscribe(jobId: string, afterSeq: number, onEvent: Listener): () => void {
    for (const { seq, event } of this.read(jobId, afterSeq)) onEvent(seq, event);
    let listeners = this.listeners.get(jobId);
    if (!listeners) this.listeners.set(jobId, (listeners = new Set()));
    const listener: Listener = (seq, event) => {
      if (seq > afterSeq) onEvent(seq, event);
    };
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.listeners.get(jobId) === listeners) this.listeners.delete(jobId);
    };
  }

  private opened(jobId: string): OpenLog {
    const existing = this.open.get(jobId);
    if (existing) return existing;
    const file = this.file(jobId);
    mkdirSync(join(this.root, jobId), { recursive: true });
    const stored = this.read(jobId);
    const fd = openSync(file, 'a+');
    // A torn last line from a crash: start the next event on a line of its own.
    const size = fstatSync(fd).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) writeSync(fd, '\n');
    }
    const log = { fd, lastSeq: stored.at(-1)?.seq ?? 0 };
    this.open.set(jobId, log);
    return log;
  }
}
