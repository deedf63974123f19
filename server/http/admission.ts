/**
 * What is refused before any route sees a request, alike for the /cosi/
 * fast path and the app:
 *
 * - Connections past --max-connections get one polite answer: 503 with
 *   Retry-After and Connection: close. A range client or a CDN then knows
 *   the origin is busy rather than broken: cosi-fetch (and most clients)
 *   wait as Retry-After says and resume, and a CDN passes a 503 on instead
 *   of marking the origin down, as it may after connection resets. Their
 *   request must still be read to answer it, so a few more than the cap are
 *   let in for that, with a short deadline; past those Node closes new
 *   sockets unanswered, which bounds what a flood of connections can hold.
 * - Malformed header sets: two Host lines or an invalid Host (RFC 9112 §3.2
 *   requires 400), and two Authorization lines. A request carries one
 *   credential; Node keeps only the first of repeated Authorization lines
 *   and the fetch API joins them, so without this rule the fast path and the
 *   app disagreed about who was asking.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { sendJsonError } from './errors.js';

/** Default --max-connections, lowered when the open-file limit cannot hold it. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** Connections past the cap that are still read and answered 503. */
export const REFUSED_MAX = 64;

/** An over-cap connection that sends no request within this is closed. */
const REFUSED_DEADLINE_MS = 5000;

/**
 * The default cap: 1024, or fewer when the process's open-file limit (Node raises the soft limit
 * to the hard one at start) must also hold the archive descriptors and some spare.
 */
export function defaultMaxConnections(maxOpenFiles: number, limitsFile = '/proc/self/limits'): number {
  let nofile = Infinity;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync(limitsFile, 'utf8'));
    if (m) nofile = Number(m[1]);
  } catch {
    // Not Linux: no limit known, keep the default.
  }
  return Math.max(16, Math.min(DEFAULT_MAX_CONNECTIONS, nofile - maxOpenFiles - REFUSED_MAX - 64));
}

/**
 * Counts the connections of `server` and marks those past `cap`. `refused(socket)` tells the
 * request handler to answer it with refuseBusy. With TLS the socket requests arrive on is the
 * TLS one, known once the handshake is done.
 */
export function capConnections(server: Server, cap: number, tls = false): { refused: (s: Socket) => boolean; readonly admitted: number } {
  const over = new WeakSet<Socket>();
  let admitted = 0;
  // Beyond the cap and the refusal slots, Node itself closes new connections.
  server.maxConnections = cap + REFUSED_MAX;
  server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
    if (admitted < cap) {
      admitted++;
      s.once('close', () => admitted--);
      return;
    }
    over.add(s);
    s.setTimeout(REFUSED_DEADLINE_MS);
    s.once('timeout', () => s.destroy());
  });
  return {
    refused: (s) => over.has(s),
    get admitted() {
      return admitted;
    },
  };
}

/** The answer on a connection past the cap. */
export function refuseBusy(res: ServerResponse, cap: number): void {
  res.shouldKeepAlive = false;
  sendJsonError(res, 503, 'BUSY', `too many connections (limit ${cap}); retry shortly`, { 'Retry-After': '1', Connection: 'close' });
}

/** A reg-name, IPv4 or bracketed IPv6 literal, and an optional port (RFC 3986 host, RFC 9110 §7.2). */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/** Why the request's header set is malformed, or undefined when it is not. */
export function malformedHeaders(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let hosts = 0;
  let auths = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      if (!HOST.test(raw[i + 1]!)) return `invalid Host header ${JSON.stringify(raw[i + 1])}`;
    } else if (name.length === 13 && name.toLowerCase() === 'authorization') auths++;
  }
  if (hosts > 1) return `${hosts} Host headers: a request names one host (RFC 9112 section 3.2)`;
  if (auths > 1) return `${auths} Authorization headers: send one credential`;
  return undefined;
}

/** The answer to a malformed header set; the connection closes after it. */
export function refuseMalformed(res: ServerResponse, why: string): void {
  res.shouldKeepAlive = false;
  sendJsonError(res, 400, 'BAD_REQUEST', why, { Connection: 'close' });
}
