// The repository's Layerfiles as a DAG drawn in levels: level 1 has no dependencies, level n depends on
// runners of lower levels. Each runner is a card (status, duration); clicking one selects it.
import type { RunnerDetail } from '../../server/api/types.js';
import { formatDuration } from '../format.js';
import { runnersByLevel } from '../jobState.js';
import { StatusBadge } from './StatusBadge.js';

export function RunnerDag({ runners, selected, onSelect }: { runners: RunnerDetail[]; selected: string | null; onSelect: (runner: string) => void }) {
  if (runners.length === 0) return <div className="card muted pad">The run has not planned its Layerfiles yet.</div>;
  return (
    <div className="dag" data-testid="dag">
      {runnersByLevel(runners).map(({ level, runners: list }, i) => (
        <div className="dag-level" key={level}>
          {i > 0 && <div className="dag-arrow" aria-hidden />}
          <div className="dag-level-inner">
            <div className="dag-level-title">Level {level}</div>
            {list.map((runner) => {
              const done = runner.steps.filter((s) => s.status !== 'pending' && s.status !== 'running').length;
              const waiting = runner.buttons.some((b) => b.state === 'waiting');
              return (
                <button
                  key={runner.runner}
                  className={`runner-card runner-${runner.status}${selected === runner.runner ? ' selected' : ''}`}
                  onClick={() => onSelect(runner.runner)}
                  data-runner={runner.runner}
                >
                  <div className="runner-card-top">
                    <span className="runner-name">{runner.runner}</span>
                    <StatusBadge status={runner.status} />
                  </div>
                  <div className="runner-card-meta">
                    <code>{runner.layerfile}</code>
                  </div>
                  <div className="runner-card-meta">
                    <span>
                      {done}/{runner.steps.length} steps
                    </span>
                    <span>{formatDuration(runner.durationMs)}</span>
                  </div>
                  {waiting && <div className="runner-card-flag">Waiting for approval</div>}
                  {runner.debuggable && <div className="runner-card-flag flag-debug">Debug terminal available</div>}
                </button>
              );
            })}
          </div>
        </div>
      ))}
    </div>
  );
}
