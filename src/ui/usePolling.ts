// Runs `load` now and every `intervalMs` while the component is mounted (and again when `deps` change);
// answers from a load started before the last deps change are dropped.
import { useCallback, useEffect, useRef, useState } from 'react';

export function usePolling<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[]): { value: T | undefined; error: unknown; reload: () => void } {
  const [value, setValue] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(() => {
    const mine = generation.current;
    loadRef.current().then(
      (result) => {
        if (mine !== generation.current) return;
        setValue(result);
        setError(null);
      },
      (caught: unknown) => mine === generation.current && setError(caught),
    );
  }, []);

  useEffect(() => {
    generation.current++;
    run();
    const timer = setInterval(run, intervalMs);
    return () => clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  return { value, error, reload: run };
}
