/**
 * Per-request bookkeeping for every path into the server (the app's
 * middleware and the /cosi/ fast path): the request counter by route and
 * status, and the log line written when the response closes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from '../metrics.js';
import type { AppDeps, RequestStats } from './env.js';

/** cosi_http_requests_total samples by route and status, looked up without building label keys. */
const requestCounters = new WeakMap<Metrics, Map<string, { value: number }>>();

function requestCounter(metrics: Metrics, route: string, status: number): { value: number } {
  let byKey = requestCounters.get(metrics);
  if (!byKey) requestCounters.set(metrics, (byKey = new Map()));
  const key = `${status} ${route}`;
  let s = byKey.get(key);
  if (!s) byKey.set(key, (s = metrics.series('cosi_http_requests_total', { route, status: String(status) })));
  return s;
}

/**
 * The request's bookkeeping: counted and logged once the response closes, so
 * byte endpoints (which write to the socket themselves) report the real
 * outcome. Shared by the app and the raw fast path (routes/raw-fast.ts).
 */
export function trackRequest(deps: AppDeps, incoming: IncomingMessage, outgoing: ServerResponse): RequestStats {
  const stats: RequestStats = { route: 'unknown', bytes: 0 };
  const t0 = deps.log ? performance.now() : 0;
  if (deps.log) countBody(incoming, outgoing, stats);
  const done = (): void => {
    const status = outgoing.statusCode;
    requestCounter(deps.metrics, stats.route, status).value++;
    deps.log?.({
      time: new Date().toISOString(),
      method: incoming.method,
      url: incoming.url,
      status,
      route: stats.route,
      id: stats.id,
      bytes: stats.bytes,
      ms: Math.round((performance.now() - t0) * 10) / 10,
      range: incoming.headers.range,
      remote: incoming.socket.remoteAddress,
      complete: outgoing.writableFinished,
      // Unset only when the connection closed while the transfer waited on a read.
      aborted: stats.aborted ?? (outgoing.writableFinished ? undefined : 'connection-closed'),
    });
  };
  // A transfer cut short learns why (stats.aborted) in the promise chain that the 'close' event
  // starts: log after it has run.
  outgoing.once('close', () => (outgoing.writableFinished ? done() : setImmediate(done)));
  if (deps.draining?.()) outgoing.setHeader('Connection', 'close');
  return stats;
}

/** Body bytes of one write or end call (a callback in the chunk's place is no data). */
function chunkBytes(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return chunk instanceof Uint8Array ? chunk.byteLength : 0;
}

/**
 * stats.bytes, for the log: every body byte handed to the response, whoever
 * wrote it (a byte endpoint, Hono's JSON and HTML bodies, an error body), so
 * the log says what was sent. HEAD, 204 and 304 carry no body, whatever was
 * passed to end(). Only when logging: the count has no other reader.
 */
function countBody(incoming: IncomingMessage, outgoing: ServerResponse, stats: RequestStats): void {
  const bodiless = (): boolean => incoming.method === 'HEAD' || outgoing.statusCode === 204 || outgoing.statusCode === 304;
  const write = outgoing.write;
  const end = outgoing.end;
  outgoing.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    if (!bodiless()) stats.bytes += chunkBytes(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  outgoing.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (!bodiless()) stats.bytes += chunkBytes(chunk, rest[0]);
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as ServerResponse['end'];
}
