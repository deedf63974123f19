/**
 * /cosi/ GET and HEAD of a local archive, answered without the router: at
 * thousands of small ranges a second, building a fetch Request, a Hono
 * context and the middleware chain per request cost more than the serving.
 * Everything this path does not handle exactly as the app would (another
 * method or prefix, auth failing, an id that is not a local file, remote and
 * --redirect images) returns false and goes through the app unchanged. The
 * bookkeeping (log line, metrics, draining) and the byte serving are the
 * app's own functions, so both paths answer alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { trackRequest } from '../http/track.js';
import { rawBody, rawId } from './raw.js';
import type { AppDeps, RequestStats } from '../http/env.js';
import { describeError, sendJsonError } from '../http/errors.js';
import { notFound } from '../errors.js';
import { transferTo } from '../http/transfer.js';
import { readExactSync, SYNC_READ_MAX } from '../http/fd-body.js';
import { formatContentRange } from '../../shared/transport/range.js';
import type { OpenArchive } from '../catalog/open-archive.js';
import type { IndexRecord } from '../catalog/indexer.js';
import type { Metrics } from '../metrics.js';

const PREFIX = '/cosi/';

export function rawFastPath(deps: AppDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url;
    if (url === undefined || !url.startsWith(PREFIX) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    if (deps.authorize) {
      const auth = req.headers.authorization;
      if (!deps.authorize(Array.isArray(auth) ? auth.join(', ') : auth)) return false;
    }
    const id = idOf(url);
    if (id === undefined || !deps.catalog.hasLocal(id)) return false;
    const stats = trackRequest(deps, req, res);
    stats.route = 'raw';
    stats.id = id;
    if (smallRange(deps, req, res, stats, id)) return true;
    void serve(deps, req, res, stats, id).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      const d = describeError(err);
      if (d.body.error.code === 'INTERNAL') deps.log?.({ time: new Date().toISOString(), event: 'error', message: String((err as Error)?.stack ?? err) });
      sendJsonError(res, d.status, d.body.error.code, d.body.error.message, d.headers);
    });
    return true;
  };
}

/**
 * rawId per URL, remembered: range readers ask for the same URL thousands of times, and
 * decoding and checking its segments each time showed in profiles. rawId is pure, so a
 * remembered answer is the answer; the map is emptied when full and skips long URLs, so odd
 * requests cannot grow it past a few hundred KiB.
 */
const ids = new Map<string, string | undefined>();
const IDS_MAX = 1024;

function idOf(url: string): string | undefined {
  if (ids.has(url)) return ids.get(url);
  const q = url.indexOf('?');
  const id = rawId(url.slice(PREFIX.length, q < 0 ? undefined : q));
  if (url.length > 256) return id; // long URLs are not the repeated kind, and would bloat the map
  if (ids.size >= IDS_MAX) ids.clear();
  ids.set(url, id);
  return id;
}

/**
 * Small bodies are cut from a shared slab, as Buffer.allocUnsafe does for tiny ones: a 4 KiB
 * range is past its pool size, and a fresh ArrayBuffer per request showed in profiles. A slice
 * is never handed out twice; a used-up slab is dropped and freed once its last slice is.
 */
const SLAB = 256 * 1024;
let slab = Buffer.allocUnsafe(0);
let slabUsed = 0;

function slabBuffer(length: number): Buffer {
  if (length > SLAB / 4) return Buffer.allocUnsafe(length);
  if (slabUsed + length > slab.length) {
    slab = Buffer.allocUnsafe(SLAB);
    slabUsed = 0;
  }
  const buf = slab.subarray(slabUsed, slabUsed + length);
  slabUsed += (length + 7) & ~7; // keep slices 8-byte aligned, as Node's pool does
  return buf;
}

/** `bytes=first-last`, the form range readers send; anything else takes the full parser. */
const SIMPLE_RANGE = /^bytes=(\d{1,15})-(\d{1,15})$/;

/** Per archive record, the headers every answer for it carries, in sendBytes' order, as a flat raw list. */
const recordHeaders = new WeakMap<IndexRecord, string[]>();

function headersOf(record: IndexRecord): string[] {
  let list = recordHeaders.get(record);
  if (!list) {
    // The same body description the app serves (rawBody needs no open file for its metadata).
    const body = rawBody({ record } as OpenArchive);
    list = ['Accept-Ranges', 'bytes', 'ETag', body.etag, 'Last-Modified', body.lastModified.toUTCString()];
    for (const [k, v] of Object.entries(body.headers ?? {})) list.push(k, v);
    list.push('Content-Type', body.contentType);
    recordHeaders.set(record, list);
  }
  return list;
}

/** Counters the small-range path bumps directly, per metrics registry. */
const counters = new WeakMap<Metrics, { bytes: { value: number }; single: { value: number } }>();

function countersOf(m: Metrics): { bytes: { value: number }; single: { value: number } } {
  let c = counters.get(m);
  if (!c) {
    c = { bytes: m.series('cosi_http_bytes_served_total', { route: 'raw' }), single: m.series('cosi_http_range_requests_total', { kind: 'single' }) };
    counters.set(m, c);
  }
  return c;
}

/**
 * The common case of range readers, done synchronously: a GET for one small
 * range, no conditional headers, the handle and record already cached. It
 * answers exactly as sendBytes would (same headers, same accounting) in one
 * read and one writev, without promises or per-request header objects.
 * False, with nothing written, whenever the general path is needed.
 */
function smallRange(deps: AppDeps, req: IncomingMessage, res: ServerResponse, stats: RequestStats, id: string): boolean {
  if (req.method !== 'GET') return false;
  const h = req.headers;
  const range = h.range;
  if (
    range === undefined ||
    h['if-match'] !== undefined ||
    h['if-unmodified-since'] !== undefined ||
    h['if-none-match'] !== undefined ||
    h['if-modified-since'] !== undefined ||
    h['if-range'] !== undefined
  ) {
    return false;
  }
  const m = SIMPLE_RANGE.exec(range);
  if (!m) return false;
  const a = deps.catalog.openCached(id);
  if (!a) return false;
  try {
    const size = a.record.identity.size;
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), size - 1);
    if (start > end) return false; // unsatisfiable or invalid: the general path words the answer
    const length = end - start + 1;
    if (length > SYNC_READ_MAX) return false;
    const buf = slabBuffer(length);
    try {
      readExactSync(a.fd, buf, length, start);
    } catch {
      return false; // the general path reads again and reports the error as JSON
    }
    const headers = headersOf(a.record).slice();
    headers.push('Content-Length', String(length), 'Content-Range', formatContentRange(start, end, size));
    res.writeHead(206, headers);
    const c = countersOf(deps.metrics);
    c.single.value++;
    c.bytes.value += length;
    res.end(buf);
    return true;
  } finally {
    a.release();
  }
}

async function serve(deps: AppDeps, req: IncomingMessage, res: ServerResponse, stats: RequestStats, id: string): Promise<void> {
  const a = await deps.catalog.open(id);
  if (!a) throw notFound(`no archive at ${PREFIX}${id}.cosi`);
  await transferTo(req, res, stats, deps, rawBody(a), a);
}
