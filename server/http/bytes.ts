/**
 * Range serving for every byte endpoint (raw archives, partitions, blobs),
 * written straight to Node's ServerResponse: the exact Content-Length goes
 * out first (never chunked: some CDNs then drop ranges, and installers trust
 * the length), and the body comes from the open file with backpressure
 * (fd-body.ts for local files, a stream otherwise).
 *
 * Order of evaluation follows RFC 9110 §13.2.2: If-Match or else
 * If-Unmodified-Since (412), If-None-Match or else If-Modified-Since (304)
 * in preconditions.ts, then Range guarded by If-Range.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatContentRange, ifRangeAllows, parseRangeHeader, unsatisfiedContentRange, type ByteRange } from '../../shared/transport/range.js';
import { sendJsonError } from './errors.js';
import { sendFdParts, sendFdRange } from './fd-body.js';
import { evaluatePreconditions } from './preconditions.js';

export interface ByteBody {
  size: number;
  /** Strong, quoted. */
  etag: string;
  lastModified: Date;
  contentType: string;
  /** Extra headers on every answer (X-Cosi-*, Cache-Control). */
  headers?: Record<string, string>;
  /** Bytes [start, end] (inclusive) of the body. */
  open(start: number, end: number): Readable;
  /** Set when the body is bytes [offset, offset+size) of an open local file: served without streams. */
  file?: { fd: number; offset: number };
}

export interface SendOptions {
  maxRanges: number;
  /** Called with each chunk's length as it is handed to the socket. */
  onBytes?: (n: number) => void;
  onRange?: (kind: 'single' | 'multipart') => void;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function baseHeaders(body: ByteBody): Record<string, string> {
  return {
    'Accept-Ranges': 'bytes',
    ETag: body.etag,
    'Last-Modified': body.lastModified.toUTCString(),
    ...body.headers,
  };
}

/** Answer a GET or HEAD for `body`; resolves when the response is done or failed. */
export async function sendBytes(req: IncomingMessage, res: ServerResponse, body: ByteBody, opts: SendOptions): Promise<void> {
  const head = req.method === 'HEAD';
  const base = baseHeaders(body);

  const verdict = evaluatePreconditions(req.headers, body);
  if (verdict?.status === 412) return sendJsonError(res, 412, 'PRECONDITION_FAILED', verdict.message, base);
  if (verdict?.status === 304) {
    res.writeHead(304, base);
    res.end();
    return;
  }

  let ranges: ByteRange[] | undefined;
  const rangeHeader = header(req, 'range');
  if (rangeHeader !== undefined && ifRangeAllows(header(req, 'if-range'), body.etag, body.lastModified)) {
    const parsed = parseRangeHeader(rangeHeader, body.size, { maxRanges: opts.maxRanges });
    if (parsed.kind === 'unsatisfiable') {
      return sendJsonError(res, 416, 'RANGE_NOT_SATISFIABLE', `no requested range starts before the end (${body.size} bytes)`, {
        ...base,
        'Content-Range': unsatisfiedContentRange(body.size),
      });
    }
    if (parsed.kind === 'ranges') ranges = parsed.ranges;
  }

  const count = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      opts.onBytes?.(chunk.length);
      yield chunk;
    }
  };

  if (!ranges) {
    const headers = { ...base, 'Content-Type': body.contentType, 'Content-Length': String(body.size) };
    if (body.file && !head && body.size > 0) return sendFdRange(res, 200, headers, body.file.fd, body.file.offset, body.size, opts.onBytes);
    res.writeHead(200, headers);
    if (head || body.size === 0) return void res.end();
    return pipeline(body.open(0, body.size - 1), count, res);
  }

  if (ranges.length === 1) {
    const r = ranges[0]!;
    const headers = {
      ...base,
      'Content-Type': body.contentType,
      'Content-Length': String(r.end - r.start + 1),
      'Content-Range': formatContentRange(r.start, r.end, body.size),
    };
    opts.onRange?.('single');
    if (body.file && !head) return sendFdRange(res, 206, headers, body.file.fd, body.file.offset + r.start, r.end - r.start + 1, opts.onBytes);
    res.writeHead(206, headers);
    if (head) return void res.end();
    return pipeline(body.open(r.start, r.end), count, res);
  }

  const boundary = `cosi-${randomBytes(12).toString('hex')}`;
  const partHead = (r: ByteRange, i: number): Buffer =>
    Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${body.contentType}\r\nContent-Range: ${formatContentRange(r.start, r.end, body.size)}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const heads = ranges.map(partHead);
  const length = heads.reduce((n, h, i) => n + h.length + ranges[i]!.end - ranges[i]!.start + 1, tail.length);
  const headers = { ...base, 'Content-Type': `multipart/byteranges; boundary=${boundary}`, 'Content-Length': String(length) };
  opts.onRange?.('multipart');
  if (body.file && !head) {
    const { fd, offset } = body.file;
    const parts = ranges.map((r, i) => ({ head: heads[i]!, position: offset + r.start, length: r.end - r.start + 1 }));
    return sendFdParts(res, 206, headers, fd, parts, tail, opts.onBytes);
  }
  res.writeHead(206, headers);
  if (head) return void res.end();
  const parts = async function* (): AsyncGenerator<Buffer> {
    for (let i = 0; i < ranges.length; i++) {
      yield heads[i]!;
      const r = ranges[i]!;
      // One range at a time: the next file stream opens only when the previous is drained.
      for await (const chunk of body.open(r.start, r.end)) {
        opts.onBytes?.((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    }
    yield tail;
  };
  return pipeline(parts, res);
}
