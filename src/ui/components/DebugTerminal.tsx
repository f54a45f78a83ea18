// The debug terminal: xterm.js over the websocket of docs/server-api.md. Client → server JSON
// `{type:'input', data}` / `{type:'resize', cols, rows}`; server → client terminal output frames, and
// `\u0000{"type":"exit","code":N}` at the end. The machine lives as long as the socket.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';

type TerminalState = 'connecting' | 'open' | 'exited' | 'closed';

export function DebugTerminal({ jobId, runner, onClose }: { jobId: string; runner: string; onClose: () => void }) {
  const host = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<TerminalState>('connecting');
  const [exitCode, setExitCode] = useState<number | null>(null);

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const terminal = new Terminal({
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 13,
      cursorBlink: true,
      theme: { background: '#0b1020', foreground: '#dbe2ef', cursor: '#a5b4fc', selectionBackground: '#334155' },
    });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    terminal.open(element);
    fit.fit();

    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/api/jobs/${encodeURIComponent(jobId)}/runners/${encodeURIComponent(runner)}/terminal?cols=${terminal.cols}&rows=${terminal.rows}`);
    socket.binaryType = 'arraybuffer';
    const send = (message: object) => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));
    const sendSize = () => send({ type: 'resize', cols: terminal.cols, rows: terminal.rows });

    socket.onopen = () => {
      setState('open');
      sendSize();
      terminal.focus();
    };
    socket.onmessage = (message) => {
      if (typeof message.data === 'string') {
        if (message.data.startsWith('\u0000')) {
          try {
            const control = JSON.parse(message.data.slice(1)) as { type: string; code?: number };
            if (control.type === 'exit') {
              setExitCode(control.code ?? null);
              setState('exited');
            }
          } catch {
            // not a control frame after all: ignore
          }
          return;
        }
        terminal.write(message.data);
      } else terminal.write(new Uint8Array(message.data as ArrayBuffer));
    };
    socket.onclose = () => setState((s) => (s === 'exited' ? s : 'closed'));
    const input = terminal.onData((data) => send({ type: 'input', data }));
    const resized = terminal.onResize(sendSize);
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(element);
    return () => {
      observer.disconnect();
      input.dispose();
      resized.dispose();
      socket.close();
      terminal.dispose();
    };
  }, [jobId, runner]);

  const label = state === 'connecting' ? 'starting machine…' : state === 'open' ? 'connected' : state === 'exited' ? `exited (${exitCode ?? '?'})` : 'disconnected';
  return (
    <div className="terminal-panel" data-testid="terminal">
      <div className="terminal-header">
        <span className="terminal-title">
          Debug terminal · <code>{runner}</code>
        </span>
        <span className={`terminal-state terminal-${state}`}>{label}</span>
        <span className="spacer" />
        <span className="muted small">a throwaway clone of the failure snapshot, destroyed on close</span>
        <button className="btn btn-sm btn-dark" onClick={onClose}>
          Close
        </button>
      </div>
      <div className="terminal-host" ref={host} />
    </div>
  );
}
