// Waiting in end-to-end tests for something another process does.

/** Polls `probe` (every 200 ms) until it gives a value, which is returned; throws after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The job statuses a job does not leave. */
export const ENDED: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'ERROR', 'CANCELLED']);
