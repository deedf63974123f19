/**
 * Folder shared/transport/http/: one URL (plus mirrors) as a ByteSource: agent, endpoints, failures, retries,
 * validators, the pump stream. Imports ../ and errors.ts; importers use source.ts, agent.ts, endpoints.ts.
 *
 * An HTTP(S) URL as a ByteSource, over undici with a pooled keep-alive Agent.
 *
 * Every read is one ranged GET. Streams survive the faults of real networks:
 * a dropped or reset connection, a stall, a trickle or a short body resumes
 * from the last byte delivered, with If-Range so that a file replaced on the
 * server is detected instead of spliced, with exponential backoff, a bounded
 * retry count, and mirrors tried in turn from the same offset.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { CosiError } from '../../errors.js';
import { parseContentRange, parseUnsatisfiedContentRange } from '../range.js';
import type { ByteSource } from '../source.js';
import { sharedAgent } from './agent.js';
import { Endpoints, type Endpoint } from './endpoints.js';
import { classify, fail, statusError } from './failures.js';
import { resolveOptions, type HttpSourceEvent, type HttpSourceOptions, type ResolvedOptions } from './options.js';
import { PumpStream } from './pump-stream.js';
import { Requester } from './request.js';
import { discard, header } from './response.js';
import { Retrier, type RetryContext } from './retrier.js';
import { SpeedGuard } from './speed-guard.js';
import { checkValidator, ifRangeValue, sourceChanged, versionChange, type Validator } from './validator.js';

type RangeAnswer = { kind: 'eof' } | { kind: 'body'; body: Dispatcher.ResponseData['body']; start: number; end: number; url: string };

function checkSpan(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new CosiError('COSI_ERR_INTERNAL', `invalid byte span: offset ${offset}, length ${length}`);
  }
}

/** Every in-flight request and stream of a source listens on its root signal: no listener cap. */
function rootController(): AbortController {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  return ac;
}

export class HttpSource implements ByteSource {
  readonly name: string;
  /** Every request sent (redirect hops included) and every body byte received. */
  readonly stats = { requests: 0, bytes: 0 };
  /** Pinned from the first response that carried one; later responses must match it. */
  validator: Validator | undefined;
  /** true once a server answered a range with 206; false when it answered 200 instead. */
  rangeSupported: boolean | undefined;

  private readonly endpoints: Endpoints;
  private knownSize: number | undefined;
  private sizing: Promise<number> | undefined;
  private root = rootController();
  /** Body chunks are ours alone only from our own Agent; a caller's dispatcher may keep them (recorders, caches). */
  private readonly ownChunks: boolean;
  private readonly o: ResolvedOptions;
  private readonly http: Requester;
  private readonly retries: RetryContext;

  constructor(url: string, opts: HttpSourceOptions = {}) {
    this.endpoints = new Endpoints([url, ...(opts.mirrors ?? [])]);
    if (opts.label !== undefined) this.endpoints.primary.name = opts.label;
    this.name = this.endpoints.primary.name;
    if (opts.expect) {
      const { size, ...v } = opts.expect;
      if (v.etag !== undefined || v.lastModified !== undefined) this.validator = this.endpoints.primary.validator = v;
      this.knownSize = size;
    }
    this.o = resolveOptions(opts);
    const emit = (e: HttpSourceEvent): void => this.o.onEvent?.(e);
    this.ownChunks = opts.dispatcher === undefined;
    this.http = new Requester(opts.dispatcher ?? sharedAgent(this.o.connectTimeoutMs), opts.headers, this.o, this.stats, emit);
    this.retries = { name: this.name, endpoints: this.endpoints, options: this.o, emit };
  }

  async size(): Promise<number> {
    if (this.knownSize !== undefined) return this.knownSize;
    this.sizing ??= this.head().finally(() => (this.sizing = undefined));
    return this.sizing;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkSpan(offset, length);
    if (length <= 0) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    let got = 0;
    for await (const chunk of this.pull(offset, length, this.root.signal, false)) {
      parts.push(chunk);
      got += chunk.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
  }

  stream(offset: number, length: number): Readable {
    checkSpan(offset, length);
    if (length <= 0) return Readable.from([]);
    const ac = new AbortController();
    return new PumpStream(() => this.pull(offset, length, ac.signal, true), ac, this.root.signal, this.name, this.ownChunks);
  }

  /**
   * The whole file in one plain GET, for a sequential pass when the server
   * ignores Range. Not resumable: a failure mid-body is the stream's error.
   */
  async openFull(): Promise<{ body: Readable; size?: number; contentType?: string; url: string }> {
    const ac = new AbortController();
    const signal = AbortSignal.any([ac.signal, this.root.signal]);
    const retrier = new Retrier(this.retries, signal);
    for (;;) {
      const ep = this.endpoints.pick();
      try {
        const { res, url } = await this.http.send(ep, 'GET', undefined, undefined, signal);
        const what = `GET ${url}`;
        if (res.statusCode !== 200) {
          await res.body.dump().catch(() => {});
          throw statusError(what, res);
        }
        const cl = header(res.headers, 'content-length');
        const size = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
        try {
          this.checkValidator(ep, res.headers);
          if (size !== undefined) this.learnSize(size, ep);
        } catch (err) {
          discard(res.body);
          throw err;
        }
        const body = res.body;
        const counted = async function* (this: HttpSource): AsyncGenerator<Buffer> {
          try {
            for await (const chunk of body as AsyncIterable<Buffer>) {
              this.stats.bytes += chunk.length;
              yield chunk;
            }
          } catch (err) {
            throw classify(err, what, this.o.idleTimeoutMs).error;
          } finally {
            discard(body);
          }
        }.bind(this);
        return { body: new PumpStream(counted, ac, this.root.signal, this.name), size, contentType: header(res.headers, 'content-type'), url };
      } catch (err) {
        await retrier.failed(err, 0, ep);
      }
    }
  }

  /** Aborts this source's in-flight requests (the shared Agent stays up). The source stays usable. */
  async close(): Promise<void> {
    this.root.abort();
    this.root = rootController();
  }

  private async head(): Promise<number> {
    const retrier = new Retrier(this.retries, this.root.signal);
    for (;;) {
      const ep = this.endpoints.pick();
      try {
        const { res, url } = await this.http.send(ep, 'HEAD', undefined, undefined, this.root.signal);
        await res.body.dump().catch(() => {});
        const cl = header(res.headers, 'content-length');
        // Some object stores refuse HEAD on signed GET URLs, and chunked responses have no length:
        // a one-byte range learns the size from Content-Range instead.
        const probe = [403, 405, 501].includes(res.statusCode) || (res.statusCode === 200 && (cl === undefined || !/^\d+$/.test(cl)));
        if (probe) {
          await this.read(0, 1);
          if (this.knownSize !== undefined) return this.knownSize;
          throw fail('COSI_ERR_UNSUPPORTED', `HEAD ${url}: no Content-Length and no Content-Range; the size is unknown`, 'mirror');
        }
        if (res.statusCode !== 200) throw statusError(`HEAD ${url}`, res);
        this.checkValidator(ep, res.headers);
        this.learnSize(Number(cl), ep);
        return this.knownSize!;
      } catch (err) {
        await retrier.failed(err, 0, ep);
      }
    }
  }

  /**
   * Bytes [offset, offset+length) as chunks, resuming after faults. With
   * `exact`, a file that ends early is an error; otherwise the chunks stop at
   * its end (ByteSource.read's contract).
   */
  private async *pull(offset: number, length: number, signal: AbortSignal, exact: boolean): AsyncGenerator<Buffer> {
    let pos = offset;
    let end = offset + length;
    const retrier = new Retrier(this.retries, signal);
    for (;;) {
      if (this.knownSize !== undefined && end > this.knownSize) {
        if (exact) throw this.truncated(offset, length);
        end = Math.max(pos, this.knownSize);
      }
      if (pos >= end) return;
      const ep = this.endpoints.pick();
      let body: Dispatcher.ResponseData['body'] | undefined;
      try {
        const answer = await this.openRange(ep, pos, end - 1, signal);
        if (answer.kind === 'eof') {
          if (exact) throw this.truncated(offset, length);
          return;
        }
        body = answer.body;
        const stop = Math.min(end, answer.end + 1);
        const guard = new SpeedGuard(this.o.minBytesPerSecond, this.o.lowSpeedWindowMs, `GET ${answer.url}`);
        for await (const chunk of body as AsyncIterable<Buffer>) {
          this.stats.bytes += chunk.length;
          guard.arrived(chunk.length);
          const take = Math.min(chunk.length, stop - pos);
          // Bytes past the Content-Range end would be a server bug; they are counted, never delivered.
          if (take <= 0) continue;
          pos += take;
          retrier.progressed(take);
          yield take === chunk.length ? chunk : chunk.subarray(0, take);
          guard.resume();
        }
        // A 206 may legally cover less than asked (the loop asks for the rest);
        // a body shorter than its own Content-Range is a dropped connection.
        if (pos < stop) {
          throw fail('COSI_ERR_NETWORK', `GET ${answer.url}: response ended at byte ${pos}, before byte ${stop - 1} of its Content-Range`, 'again');
        }
      } catch (err) {
        ep.location = undefined;
        await retrier.failed(err, pos, ep);
      } finally {
        if (body) discard(body);
      }
    }
  }

  /** One ranged GET: its status checked, the validator compared, the size learnt. */
  private async openRange(ep: Endpoint, first: number, last: number, signal: AbortSignal): Promise<RangeAnswer> {
    const v = ep.validator;
    const ifRange = ifRangeValue(v);
    const range = `bytes=${first}-${last}`;
    const { res, url } = await this.http.send(ep, 'GET', range, ifRange, signal);
    const what = `GET ${url}`;
    const status = res.statusCode;
    if (status === 206) {
      const cr = parseContentRange(header(res.headers, 'content-range'));
      try {
        this.checkValidator(ep, res.headers);
        if (!cr) {
          // multipart/byteranges or garbage: not something a single range should get.
          throw fail('COSI_ERR_NETWORK', `${what}: 206 without a usable Content-Range (${header(res.headers, 'content-range') ?? 'none'})`, 'mirror');
        }
        if (cr.size !== undefined) this.learnSize(cr.size, ep);
        if (cr.start !== first || cr.end > last) {
          throw fail('COSI_ERR_NETWORK', `${what}: asked for ${range}, got bytes ${cr.start}-${cr.end}`, 'mirror');
        }
      } catch (err) {
        discard(res.body);
        throw err;
      }
      const encoding = header(res.headers, 'content-encoding');
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
        // Ranges of a compressed transfer are ranges of something else than the file.
        discard(res.body);
        throw fail('COSI_ERR_NETWORK', `${what}: answered with Content-Encoding ${encoding} despite Accept-Encoding: identity`, 'mirror');
      }
      ep.ranged = true;
      this.rangeSupported = true;
      return { kind: 'body', body: res.body, start: cr.start, end: cr.end, url };
    }
    if (status === 200) {
      // Never read a 200 here: it is the whole file, or another version of it.
      discard(res.body);
      if (ifRange !== undefined) {
        const how = versionChange(v!, res.headers);
        if (how !== undefined) throw sourceChanged(ep.name, how);
      }
      this.checkValidator(ep, res.headers);
      // A page or an API answer is no file without ranges: say what it is, not "no Range support".
      const page = pageKind(header(res.headers, 'content-type'));
      if (page) throw fail('COSI_ERR_NOT_COSI', `${what}: answered with ${page}, not a COSI file`, 'mirror', { details: { contentType: header(res.headers, 'content-type') } });
      if (!this.endpoints.anyRanged()) this.rangeSupported = false;
      throw fail('COSI_ERR_RANGE_UNSUPPORTED', `${what}: the server ignores Range requests (answered 200 with the whole file)`, 'mirror');
    }
    if (status === 416) {
      await res.body.dump().catch(() => {});
      const size = parseUnsatisfiedContentRange(header(res.headers, 'content-range'));
      if (size !== undefined) {
        this.learnSize(size, ep);
        if (first >= size) return { kind: 'eof' };
      }
      throw statusError(what, res);
    }
    await res.body.dump().catch(() => {});
    throw statusError(what, res);
  }

  /** Pin the first validator seen on this source too. */
  private checkValidator(ep: Endpoint, headers: Dispatcher.ResponseData['headers']): void {
    const pinned = checkValidator(ep, headers);
    if (pinned) this.validator ??= pinned;
  }

  private learnSize(size: number, ep: Endpoint): void {
    if (this.knownSize === undefined) this.knownSize = size;
    else if (this.knownSize !== size) {
      // Mirrors have their own validators, so size is what ties them together.
      throw ep === this.endpoints.primary || this.endpoints.count === 1
        ? sourceChanged(ep.name, `size ${this.knownSize} -> ${size}`)
        : fail('COSI_ERR_SOURCE_CHANGED', `${ep.name} is ${size} bytes, not ${this.knownSize} like ${this.name}; not the same file`, 'mirror');
    }
  }

  private truncated(offset: number, length: number): CosiError {
    return fail('COSI_ERR_TRUNCATED', `${this.name} is ${this.knownSize} bytes: it ends before bytes ${offset}-${offset + length - 1}`, 'never');
  }
}

/** 'an HTML page' or 'a JSON document' for such a Content-Type; undefined for anything a file may be served as. */
function pageKind(contentType: string | undefined): string | undefined {
  const t = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (t === 'text/html' || t === 'application/xhtml+xml') return `an HTML page (${t})`;
  if (t === 'application/json' || t.endsWith('+json')) return `a JSON document (${t})`;
  return undefined;
}
