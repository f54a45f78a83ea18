// Reading `docker build --progress plain` output (BuildKit): which Dockerfile steps ran and which came
// from BuildKit's cache. Pure.
//
// BuildKit prints each vertex as `#N [i/n] INSTRUCTION ...` and later either `#N CACHED` or its log and
// `#N DONE 1.2s`; the same `#N` may be printed several times while it runs.

export interface BuildStep {
  /** `[i/n] INSTRUCTION ...` as BuildKit names it. */
  label: string;
  cached: boolean;
}

export interface BuildSteps {
  steps: BuildStep[];
  ran: number;
  cached: number;
}

/** The Dockerfile steps of one build, in Dockerfile order, except FROM (pulling or resolving the base is not a step). */
export function parseBuildSteps(plainOutput: string): BuildSteps {
  const labels = new Map<string, string>();
  const cachedVertices = new Set<string>();
  for (const line of plainOutput.split(/\r?\n/)) {
    const step = /^#(\d+) (\[(?:[^\]\s]+ )?\d+\/\d+\] (\S+).*)$/.exec(line);
    if (step) {
      if (step[3] !== 'FROM' && !labels.has(step[1]!)) labels.set(step[1]!, step[2]!);
      continue;
    }
    const cached = /^#(\d+) CACHED\s*$/.exec(line);
    if (cached) cachedVertices.add(cached[1]!);
  }
  const position = (label: string) => Number(/(\d+)\/\d+\]/.exec(label)?.[1]);
  const steps = [...labels]
    .map(([vertex, label]) => ({ label, cached: cachedVertices.has(vertex) }))
    .sort((a, b) => position(a.label) - position(b.label));
  const cached = steps.filter((s) => s.cached).length;
  return { steps, ran: steps.length - cached, cached };
}
