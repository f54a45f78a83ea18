// A runner's steps: status icon, Layerfile line and text, duration, a marker when a snapshot was taken
// after it, and the why-sentence (why it reran, or which snapshot it came from).
import type { StepDetail } from '../../server/api/types.js';
import { formatDuration } from '../format.js';
import { StepIcon } from './StatusBadge.js';

export function StepList({ steps }: { steps: StepDetail[] }) {
  return (
    <ol className="steps" data-testid="steps">
      {steps.map((step) => (
        <li key={step.index} className={`step step-row-${step.status}`} data-step={step.index} data-status={step.status}>
          <StepIcon status={step.status} />
          <span className="step-line">L{step.line}</span>
          <div className="step-main">
            <code className="step-text">{step.text}</code>
            {step.reason && (
              <div className={`step-reason ${step.status === 'cached' ? 'reason-cached' : 'reason-ran'}`}>
                {step.status === 'cached' ? '' : 'why: '}
                {step.reason}
              </div>
            )}
          </div>
          {step.snapshot && (
            <span className="snapshot-tag" title="a snapshot was taken after this step">
              snapshot
            </span>
          )}
          <span className="step-duration">{step.status === 'cached' ? 'cached' : step.status === 'skipped' ? 'skipped' : formatDuration(step.durationMs)}</span>
        </li>
      ))}
    </ol>
  );
}
