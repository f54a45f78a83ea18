// A small HTTP proxy for tests that puts faults between a client and a server: answer 500/503 instead
// of forwarding, drop the connection (before answering, optionally after part of the request body), or
// forward and cut the response body after N bytes. Faults apply to the next requests that match; the
// rest pass through. Every request is logged, so tests can say which requests a client made.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export type Fault =
  /** Answer with this status and an S3-style error body; the request is not forwarded. */
  | { kind: 'status'; status: 500 | 503 }
  /** Close the connection without an answer, after reading this much of the request body (default 0). */
  | { kind: 'drop'; afterRequestBytes?: number }
  /** Forward, send the answer's head and the first `afterBytes` bytes of its body, then close the connection. */
  | { kind: 'cutResponse'; afterBytes: number };

export interface ProxiedRequest {
  method: string;
  url: string;
  /** The fault applied, if any. */
  fault: Fault['kind'] | undefined;
}

export interface FaultRule {
  fault: Fault;
  /** Which requests (default: every one). */
  match?: (request: { method: string; url: string }) => boolean;
  /** How many matching requests get the fault (default 1; Infinity for all). */
  times?: number;
}

export interface FaultProxy {
  endpoint: string;
  requests: ProxiedRequest[];
  inject(rule: FaultRule): void;
  /** Removes the faults not yet used up. */
  clear(): void;
}

const errorCodes = { 500: 'InternalError', 503: 'ServiceUnavailable' } as const;

/** Starts a proxy in front of `upstream` ('http://127.0.0.1:port'); it is closed after the test. */
export async function startFaultProxy(t: TestContext, upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: Array<Required<FaultRule>> = [];
  const requests: ProxiedRequest[] = [];

  const takeFault = (request: IncomingMessage): Fault | undefined => {
    const seen = { method: request.method ?? '', url: request.url ?? '' };
    const rule = rules.find((candidate) => candidate.times > 0 && candidate.match(seen));
    if (rule) rule.times -= 1;
    requests.push({ ...seen, fault: rule?.fault.kind });
    return rule?.fault;
  };

  const server = createServer((request, response) => {
    const fault = takeFault(request);
    switch (fault?.kind) {
      case 'status':
        return answerStatus(request, response, fault.status);
      case 'drop':
        return dropAfter(request, fault.afterRequestBytes ?? 0);
      case 'cutResponse':
      case undefined:
        return forward(request, response, target, fault?.afterBytes);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    inject: (rule) => rules.push({ match: () => true, times: 1, ...rule }),
    clear: () => void rules.splice(0),
  };
}

function answerStatus(request: IncomingMessage, response: ServerResponse, status: 500 | 503): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${errorCodes[status]}</Code><Message>injected by the test proxy</Message></Error>`;
  // Read the request first: answering while the client still sends a large body resets the connection.
  request.resume();
  request.on('end', () => {
    response.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
}

function dropAfter(request: IncomingMessage, afterRequestBytes: number): void {
  if (afterRequestBytes <= 0) {
    request.socket.destroy();
    return;
  }
  let seen = 0;
  request.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen >= afterRequestBytes) request.socket.destroy();
  });
  request.on('end', () => request.socket.destroy());
}

function forward(request: IncomingMessage, response: ServerResponse, target: URL, cutAfterBytes: number | undefined): void {
  const upstream = httpRequest(
    { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers, agent: false },
    (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      if (cutAfterBytes === undefined) {
        answer.pipe(response);
        return;
      }
      // The cut: what the head promised (Content-Length) never fully arrives.
      const cut = (): void => {
        answer.destroy();
        response.socket?.destroy();
      };
      if (cutAfterBytes === 0) {
        response.flushHeaders();
        response.write('', cut); // once the head is on the wire
        return;
      }
      let sent = 0;
      answer.on('data', (chunk: Buffer) => {
        const part = chunk.subarray(0, cutAfterBytes - sent);
        sent += part.length;
        if (sent < cutAfterBytes) response.write(part);
        else response.write(part, cut);
      });
      answer.on('end', () => response.end());
    },
  );
  upstream.on('error', () => response.socket?.destroy());
  request.pipe(upstream);
}
