/**
 * ?decompress=1: the partition decoded on the server, for netboot shells
 * that have curl and dd but no zstd. The SHA-384 covers the compressed
 * bytes, which are fully read only when decoding ends, so the last output
 * chunk is held back until the hash matched; on a mismatch the connection is
 * cut and the client's download is visibly short of Content-Length.
 *
 * A framed image (one with a seek table) also answers Range over the decoded
 * bytes, decoding only the frames that cover each range: a netboot installer
 * can resume a decompressed download. A range is checked by each frame's zstd
 * checksum; the SHA-384, which covers the whole entry, only by a full GET.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { windowLogOf } from '../../shared/format/check.js';
import { CosiError } from '../../shared/errors.js';
import { createZstdDecoder, decodeFrameRange } from '../../shared/zstd/index.js';
import type { OpenArchive } from '../catalog/open-archive.js';
import type { PartitionRecord } from '../catalog/indexer.js';
import type { AppDeps, AppEnv } from './env.js';
import { HttpError } from '../errors.js';
import { abortReason, transfer } from './transfer.js';
import { evaluatePreconditions } from './preconditions.js';
import { sendJsonError } from './errors.js';

/** Passes chunks through one behind, releasing the last only when `check` passes at the end. */
class HoldLast extends Transform {
  private held: Buffer | undefined;
  constructor(private readonly check: () => Error | undefined) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const prev = this.held;
    this.held = chunk;
    cb(null, prev);
  }
  override _flush(cb: TransformCallback): void {
    const err = this.check();
    if (err) return cb(err);
    cb(null, this.held);
  }
}

export async function sendDecompressed(c: Context<AppEnv>, deps: AppDeps, a: OpenArchive, part: PartitionRecord): Promise<Response> {
  const { incoming, outgoing } = c.env;
  const stats = c.get('stats');
  const entry = part.entry!;
  const image = part.info.image;
  const want = image.sha384?.toLowerCase();
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': part.seek ? 'bytes' : 'none',
    'Last-Modified': a.record.lastModified.toUTCString(),
    'X-Cosi-Path': image.path,
    'X-Cosi-Compressed-Size': String(image.compressedSize),
    'X-Cosi-Uncompressed-Size': String(image.uncompressedSize),
  };
  // Decoded bytes are a function of the hashed compressed bytes: a strong validator of their own.
  if (want) {
    headers['ETag'] = `"raw-${want}"`;
    headers['X-Cosi-Sha384'] = want;
  }
  // The same preconditions as every byte endpoint, against the decoded bytes' validators.
  const pre = evaluatePreconditions(incoming.headers, { etag: headers['ETag'], lastModified: a.record.lastModified });
  if (pre) {
    await a.release();
    if (pre.status === 304) {
      outgoing.writeHead(304, headers);
      outgoing.end();
    } else {
      sendJsonError(outgoing, 412, 'PRECONDITION_FAILED', pre.message, headers);
    }
    return RESPONSE_ALREADY_SENT;
  }
  if (incoming.method === 'HEAD') {
    await a.release();
    outgoing.writeHead(200, { ...headers, 'Content-Length': String(image.uncompressedSize) });
    outgoing.end();
    return RESPONSE_ALREADY_SENT;
  }
  const leave = deps.decompressGate.tryAcquire();
  if (!leave) {
    await a.release();
    throw new HttpError(503, 'BUSY', `too many decompressions running (limit ${deps.decompressGate.limit}); retry shortly`, { 'Retry-After': '2' });
  }
  const maxWindowLog = windowLogOf(a.record.archive!.metadata);
  if (part.seek && incoming.headers.range !== undefined) {
    const frames = part.seek;
    const { ETag: etag, 'Last-Modified': _lm, 'Accept-Ranges': _ar, 'Content-Type': contentType, ...rest } = headers;
    try {
      return await transfer(c, deps, {
        size: image.uncompressedSize,
        etag: etag ?? `"${a.record.etag.slice(1, -1)}-raw-${entry.dataOffset}"`,
        lastModified: a.record.lastModified,
        contentType: contentType!,
        headers: rest,
        open: (start, end) => decodeFrameRange((o, l) => a.stream(entry.dataOffset + o, l), frames, maxWindowLog, start, end),
      }, a);
    } finally {
      leave();
    }
  }
  const hash = createHash('sha384');
  let hashed = 0;
  let digest: string | undefined;
  const hashing = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      hash.update(chunk);
      hashed += chunk.length;
      yield chunk;
    }
    digest = hash.digest('hex');
  };
  const verdict = (): Error | undefined => {
    if (hashed !== entry.size) return new CosiError('COSI_ERR_TRUNCATED', `${image.path}: read ${hashed} of ${entry.size} stored bytes`);
    if (want && digest !== want) return new CosiError('COSI_ERR_HASH_MISMATCH', `${image.path}: stored bytes hash to ${digest}, metadata says ${want}`);
    return undefined;
  };
  const count = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      deps.metrics.inc('cosi_http_bytes_served_total', { route: stats.route }, chunk.length);
      yield chunk;
    }
  };
  outgoing.writeHead(200, { ...headers, 'Content-Length': String(image.uncompressedSize) });
  try {
    await pipeline(
      a.stream(entry.dataOffset, entry.size),
      hashing,
      createZstdDecoder({ maxWindowLog, expectedSize: image.uncompressedSize }),
      new HoldLast(verdict),
      count,
      outgoing,
    );
  } catch (err) {
    stats.aborted = abortReason(err);
    deps.metrics.inc('cosi_http_aborted_total', { reason: stats.aborted });
    outgoing.destroy();
  } finally {
    leave();
    await a.release();
  }
  return RESPONSE_ALREADY_SENT;
}
