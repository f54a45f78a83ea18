// The end of an exec's output. The command's stdout/stderr are our pipes (runc passes them through), but
// a daemon the command started may hold them open long after it exits, so "the pipe closed" cannot mark
// the end. The exec wrapper therefore writes a per-exec marker to both streams after the command exits
// and before it reports the exit status: every byte before the marker is the command's output (or its
// daemons' up to then), and once both markers are read nothing was lost, however loaded the host is.

/** Forwards a stream's data up to the marker, holding back only a tail that could be the marker's start. */
export class EndMarkerScanner {
  private held = Buffer.alloc(0);
  private seen = false;

  constructor(
    private readonly marker: Buffer,
    private readonly forward: (data: Buffer) => void,
  ) {}

  /** True once the marker has been read: later data is not the command's. */
  get ended(): boolean {
    return this.seen;
  }

  push(data: Buffer): void {
    if (this.seen) return;
    const buffer = this.held.length === 0 ? data : Buffer.concat([this.held, data]);
    const at = buffer.indexOf(this.marker);
    if (at >= 0) {
      this.held = Buffer.alloc(0);
      this.seen = true;
      if (at > 0) this.forward(buffer.subarray(0, at));
      return;
    }
    const keep = this.partialMarkerSuffix(buffer);
    this.held = Buffer.from(buffer.subarray(buffer.length - keep));
    if (buffer.length - keep > 0) this.forward(buffer.subarray(0, buffer.length - keep));
  }

  /** The stream closed (or we stop waiting): forward what was held back, and nothing after it. */
  finish(): void {
    if (this.held.length > 0 && !this.seen) this.forward(this.held);
    this.held = Buffer.alloc(0);
    this.seen = true;
  }

  /** The length of the longest suffix of `buffer` that is a proper prefix of the marker. */
  private partialMarkerSuffix(buffer: Buffer): number {
    const max = Math.min(this.marker.length - 1, buffer.length);
    for (let length = max; length > 0; length--) {
      if (buffer.subarray(buffer.length - length).equals(this.marker.subarray(0, length))) return length;
    }
    return 0;
  }
}
