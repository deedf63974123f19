/**
 * Glue between a route and sendBytes: one slice of an opened archive (or an
 * in-memory buffer) as a ByteBody, byte and range accounting, and the handle
 * released whatever happens. Once headers are out an error can only cut the
 * connection, which a client sees as a short body against Content-Length.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { OpenArchive } from '../catalog/open-archive.js';
import { sendBytes, type ByteBody } from './bytes.js';
import type { AppDeps, AppEnv, RequestStats } from './env.js';

export type BodyMeta = Omit<ByteBody, 'open' | 'size'>;

export function sliceOf(a: OpenArchive, offset: number, size: number, meta: BodyMeta): ByteBody {
  return {
    ...meta,
    size,
    open: (start, end) => a.stream(offset + start, end - start + 1),
    file: a.fd === undefined ? undefined : { fd: a.fd, offset },
  };
}

export function bufferBody(bytes: Buffer, meta: BodyMeta): ByteBody {
  return { ...meta, size: bytes.length, open: (start, end) => Readable.from([bytes.subarray(start, end + 1)]) };
}

export function abortReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED' || code === 'ECONNRESET' || code === 'EPIPE') return 'client-gone';
  if (typeof code === 'string' && code.startsWith('COSI_ERR_')) return code;
  return code ?? 'error';
}

/** Send `body`, then release `a` (if given). Errors before the headers surface as JSON errors. */
export async function transfer(c: Context<AppEnv>, deps: AppDeps, body: ByteBody, a?: OpenArchive): Promise<Response> {
  await transferTo(c.env.incoming, c.env.outgoing, c.get('stats'), deps, body, a);
  return RESPONSE_ALREADY_SENT;
}

/** transfer() on the bare request pair, for the raw fast path. */
export async function transferTo(incoming: IncomingMessage, outgoing: ServerResponse, stats: RequestStats, deps: AppDeps, body: ByteBody, a?: OpenArchive): Promise<void> {
  try {
    await sendBytes(incoming, outgoing, body, {
      maxRanges: deps.maxRanges,
      onBytes: (n) => {
        deps.metrics.inc('cosi_http_bytes_served_total', { route: stats.route }, n);
      },
      onRange: (kind) => deps.metrics.inc('cosi_http_range_requests_total', { kind }),
    });
  } catch (err) {
    if (!outgoing.headersSent) throw err;
    stats.aborted = abortReason(err);
    deps.metrics.inc('cosi_http_aborted_total', { reason: stats.aborted });
    outgoing.destroy();
  } finally {
    await a?.release();
  }
}

/**
 * With --redirect, where a remote slice's bytes sit in its origin file: a
 * redirect cannot carry an offset, so partitions and blobs are proxied, and
 * these headers let a client that wants to skip the proxy ask the origin
 * itself for that range.
 */
export function originHeaders(deps: AppDeps, a: OpenArchive, offset: number, size: number): Record<string, string> {
  if (!deps.redirect || !a.record.origin || size <= 0) return {};
  return { 'X-Cosi-Origin': a.record.origin, 'X-Cosi-Origin-Range': `bytes=${offset}-${offset + size - 1}` };
}
