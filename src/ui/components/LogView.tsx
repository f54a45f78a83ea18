// A runner's live log: ANSI colours (ansi_up), one section per step, auto-scroll that stops as soon as
// the user scrolls up (and a button to follow again), and a search box that highlights matches.
import { AnsiUp } from 'ansi_up';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import type { StepDetail } from '../../server/api/types.js';
import type { LogChunk } from '../jobState.js';

interface LogSection {
  step: number;
  /** One HTML string per line (ansi_up output: text is escaped, colours are spans). */
  lines: string[];
}

function toSections(chunks: LogChunk[]): LogSection[] {
  const sections: { step: number; text: string }[] = [];
  for (const chunk of chunks) {
    const last = sections[sections.length - 1];
    if (last && last.step === chunk.step) last.text += chunk.data;
    else sections.push({ step: chunk.step, text: chunk.data });
  }
  return sections.map(({ step, text }) => {
    const ansi = new AnsiUp(); // colour state must not leak from one step into the next
    ansi.use_classes = true;
    const trimmed = text.endsWith('\n') ? text.slice(0, -1) : text;
    return { step, lines: ansi.ansi_to_html(trimmed.replace(/\r\n/g, '\n')).split('\n') };
  });
}

const escapeHtml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#x27;');

/** Wraps matches of `needle` in <mark>, only in text between tags (never inside a span's attributes). */
function highlight(html: string, needle: string): { html: string; count: number } {
  if (!needle) return { html, count: 0 };
  const pattern = new RegExp(escapeHtml(needle).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi');
  let count = 0;
  const out = html.replace(/(<[^>]*>)|([^<]+)/g, (_m, tag: string | undefined, text: string | undefined) =>
    tag ??
    (text ?? '').replace(pattern, (hit) => {
      count++;
      return `<mark class="log-match">${hit}</mark>`;
    }),
  );
  return { html: out, count };
}

export function LogView({ chunks, steps, live }: { chunks: LogChunk[]; steps: StepDetail[]; live: boolean }) {
  const [search, setSearch] = useState('');
  const [current, setCurrent] = useState(0);
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);

  const sections = useMemo(() => toSections(chunks), [chunks]);
  const rendered = useMemo(() => {
    let matches = 0;
    const out = sections.map((section) => ({
      step: section.step,
      lines: section.lines.map((line) => {
        const { html, count } = highlight(line, search);
        matches += count;
        return html;
      }),
    }));
    return { sections: out, matches };
  }, [sections, search]);

  // Follow the tail while the user has not scrolled up.
  useLayoutEffect(() => {
    const element = box.current;
    if (element && follow && !search) element.scrollTop = element.scrollHeight;
  }, [rendered, follow, search]);

  useEffect(() => setCurrent(0), [search]);
  useEffect(() => {
    if (!search || rendered.matches === 0) return;
    const marks = box.current?.querySelectorAll<HTMLElement>('mark.log-match') ?? [];
    marks.forEach((m) => m.classList.remove('current'));
    const element = marks[current % rendered.matches];
    element?.classList.add('current');
    // scroll the log box only (scrollIntoView would scroll the whole page too)
    if (element && box.current) box.current.scrollTop = element.offsetTop - box.current.clientHeight / 2;
  }, [current, search, rendered]);

  const onScroll = () => {
    const element = box.current;
    if (!element) return;
    const atBottom = element.scrollHeight - element.scrollTop - element.clientHeight < 24;
    if (atBottom !== follow) setFollow(atBottom);
  };

  const stepTitle = (index: number) => {
    const step = steps.find((s) => s.index === index);
    return step ? `line ${step.line} · ${step.text}` : `step ${index + 1}`;
  };

  return (
    <div className="log">
      <div className="log-toolbar">
        <input
          className="input input-sm log-search"
          placeholder="Search log"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') setCurrent((c) => c + (e.shiftKey ? -1 + rendered.matches : 1));
          }}
          aria-label="Search log"
        />
        {search && (
          <span className="muted log-count" data-testid="log-match-count">
            {rendered.matches === 0 ? 'no matches' : `${(current % rendered.matches) + 1} / ${rendered.matches}`}
          </span>
        )}
        <span className="spacer" />
        {live && <span className="live-dot">live</span>}
        {!follow && (
          <button className="btn btn-sm" onClick={() => setFollow(true)}>
            ↓ Follow
          </button>
        )}
      </div>
      <div className="log-body" ref={box} onScroll={onScroll} data-testid="log">
        {rendered.sections.length === 0 && <div className="log-empty">{live ? 'Waiting for output…' : 'No output.'}</div>}
        {rendered.sections.map((section, i) => (
          <section key={`${section.step}-${i}`} className="log-section">
            <div className="log-step-title">{stepTitle(section.step)}</div>
            {section.lines.map((line, n) => (
              <div className="log-line" key={n}>
                <span className="log-lineno">{n + 1}</span>
                <span className="log-text" dangerouslySetInnerHTML={{ __html: line || ' ' }} />
              </div>
            ))}
          </section>
        ))}
      </div>
    </div>
  );
}
