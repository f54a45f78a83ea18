/** One measurement of `npm run bench`: a median, an optional goal, and a note (ratios measured side by side). */
export interface BenchRow {
  name: string;
  medianMs: number;
  goalMs?: number;
  note?: string;
}
