/**
 * An HTTP(S) URL as a ByteSource, over undici with a pooled keep-alive Agent.
 *
 * Every read is one ranged GET. Streams survive the faults of real networks:
 * a dropped or reset connection, a stall, a trickle or a short body resumes
 * from the last byte delivered, with If-Range so that a file replaced on the
 * server is detected instead of spliced, with exponential backoff, a bounded
 * retry count, and mirrors tried in turn from the same offset.
 */
import { createRequire } from 'node:module';
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Dispatcher } from 'undici';
import { Agent, request } from './undici.js';
import { CosiError, type ErrorCode } from '../errors.js';
import { FileSource } from './file-source.js';
import { etagMatches, isStrongEtag, parseContentRange, parseHttpDate, parseUnsatisfiedContentRange } from './range.js';
import { markExclusive, type ByteSource } from './source.js';

// Required, not imported: an ESM import of node:http builds its facade by reading every
// export, which loads Node's bundled undici (20 ms of start-up) for one status table.
const { STATUS_CODES } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export type HttpSourceEvent =
  | { type: 'request'; url: string; range?: string }
  | { type: 'retry'; url: string; offset: number; attempt: number; error: string }
  | { type: 'mirror'; from: string; to: string; offset: number };

export interface HttpSourceOptions {
  /** The same file at other URLs: on failure of one, continue from the same offset on the next. */
  mirrors?: string[];
  /** Default: a module-level pooled Agent shared by every source. */
  dispatcher?: Dispatcher;
  /** Sent with every request (e.g. authorization); dropped on redirects to another origin. */
  headers?: Record<string, string>;
  /** Longest wait for response headers or for the next body bytes, default 30 s. */
  idleTimeoutMs?: number;
  /** Default 10 s; only used for the shared Agent (a caller's dispatcher has its own). */
  connectTimeoutMs?: number;
  /** Failures tolerated per transfer before giving up, default 6. */
  retries?: number;
  /** Base of the exponential backoff (with jitter), default 200 ms. */
  backoffMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  /**
   * A transfer slower than this (bytes per second of waiting on the network,
   * consumer back-pressure excluded) over `lowSpeedWindowMs` is treated as a
   * timeout and resumed: a trickling server defeats an idle timeout alone.
   * Default 1024; 0 disables.
   */
  minBytesPerSecond?: number;
  /** Default 60 s. */
  lowSpeedWindowMs?: number;
  onEvent?: (e: HttpSourceEvent) => void;
}

/** What the first response said about the representation; later responses must agree. */
export interface Validator {
  etag?: string;
  lastModified?: string;
}

const DEFAULTS = {
  idleTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  retries: 6,
  backoffMs: 200,
  maxRedirects: 5,
  minBytesPerSecond: 1024,
  lowSpeedWindowMs: 60_000,
};
const MAX_BACKOFF_MS = 30_000;
/** A transfer that moved this much since its last failure starts counting failures afresh. */
const PROGRESS_RESETS_RETRIES = 1 << 20;
const STREAM_HIGH_WATER = 1 << 20;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const PERMANENT_REDIRECTS = new Set([301, 308]);
/** Headers that must not follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

const agents = new Map<number, Agent>();

/** The pooled keep-alive Agent shared by sources that bring no dispatcher (one per connect timeout). */
export function sharedAgent(connectTimeoutMs: number = DEFAULTS.connectTimeoutMs): Agent {
  let agent = agents.get(connectTimeoutMs);
  if (!agent) {
    agent = new Agent({ connect: { timeout: connectTimeoutMs }, keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000 });
    agents.set(connectTimeoutMs, agent);
  }
  return agent;
}

/** Close the shared Agents (idle sockets are unref'd anyway; this is for tidy exits and tests). */
export async function closeSharedAgents(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((a) => a.close()));
}

/** The URL for messages and logs: no credentials, and a query (often a signature) elided. */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?...' : ''}`;
}

type ResolvedOptions = typeof DEFAULTS & Pick<HttpSourceOptions, 'onEvent'>;

type Retry = 'again' | 'mirror' | 'never';
// How to react to an error we raised ourselves, kept off the error so `details` stays user-facing.
const retryPolicy = new WeakMap<CosiError, Retry>();

function fail(code: ErrorCode, message: string, retry: Retry, extra?: { cause?: unknown; details?: Record<string, unknown> }): CosiError {
  const err = new CosiError(code, message, extra);
  retryPolicy.set(err, retry);
  return err;
}

interface Endpoint {
  url: URL;
  name: string;
  /** Basic credentials from the URL's userinfo, for its own origin only. */
  auth: string | undefined;
  /** Where a permanent redirect led, so later requests skip the hop. */
  location: URL | undefined;
  validator: Validator | undefined;
  /** Answered a range with 206 at least once. */
  ranged: boolean;
  /** A failure that retrying this URL will not fix (4xx, TLS, no ranges), while others remain. */
  dead: CosiError | undefined;
}

function parseEndpoint(raw: string): Endpoint {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CosiError('COSI_ERR_USAGE', `not a valid URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CosiError('COSI_ERR_USAGE', `HttpSource needs an http(s) URL, got ${url.protocol}//...`);
  }
  let auth: string | undefined;
  if (url.username || url.password) {
    auth = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    url.username = '';
    url.password = '';
  }
  url.hash = '';
  return { url, name: displayUrl(url), auth, location: undefined, validator: undefined, ranged: false, dead: undefined };
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

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

/**
 * Abandon a response body. undici reports destroying an unfinished body as an
 * 'error' (RequestAbortedError); with nobody listening that would be an
 * uncaught exception, so listen first.
 */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

function sameEtag(a: string, b: string): boolean {
  // Weak comparison: a server may mark the same tag weak on one response only (compression modules do).
  return a === b || etagMatches(a, b, { weak: true });
}

function sameDate(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseHttpDate(a);
  return x !== undefined && x === parseHttpDate(b);
}

/** Every error code along the cause chain (undici wraps socket errors; connects may fail with AggregateError). */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  const visit = (e: unknown): void => {
    if (!e || typeof e !== 'object' || seen.has(e) || seen.size > 16) return;
    seen.add(e);
    const o = e as { code?: unknown; cause?: unknown; errors?: unknown; name?: unknown };
    if (typeof o.code === 'string') codes.push(o.code);
    if (o.name === 'AbortError') codes.push('ABORT_ERR');
    visit(o.cause);
    if (Array.isArray(o.errors)) o.errors.forEach(visit);
  };
  visit(err);
  return codes;
}

const TLS_CODE = /^(CERT_|ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_|HOSTNAME_MISMATCH$|ERR_OSSL_)/;

const NETWORK_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'connection broken',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'body shorter than its Content-Length',
};

/** Turn anything a request can throw into a one-line CosiError and a retry decision. */
function classify(err: unknown, what: string, idleMs: number): { error: CosiError; retry: Retry } {
  if (err instanceof CosiError) return { error: err, retry: retryPolicy.get(err) ?? 'never' };
  const codes = errorCodes(err);
  const detail = err instanceof Error ? err.message : String(err);
  const tls = codes.find((c) => TLS_CODE.test(c));
  if (tls) {
    return { error: fail('COSI_ERR_TLS', `${what}: TLS error: ${detail} (${tls})`, 'mirror', { cause: err }), retry: 'mirror' };
  }
  const timeout = (code: string, text: string) => ({
    error: fail('COSI_ERR_TIMEOUT', `${what}: ${text}`, 'again', { cause: err, details: { code } }),
    retry: 'again' as const,
  });
  if (codes.includes('UND_ERR_CONNECT_TIMEOUT')) return timeout('UND_ERR_CONNECT_TIMEOUT', 'connect timed out');
  if (codes.includes('UND_ERR_HEADERS_TIMEOUT')) return timeout('UND_ERR_HEADERS_TIMEOUT', `no response within ${idleMs} ms`);
  if (codes.includes('UND_ERR_BODY_TIMEOUT')) return timeout('UND_ERR_BODY_TIMEOUT', `no data for ${idleMs} ms (stalled)`);
  if (codes.includes('ETIMEDOUT')) return timeout('ETIMEDOUT', 'timed out');
  if (codes.includes('ABORT_ERR') || codes.includes('UND_ERR_ABORTED')) {
    return { error: fail('COSI_ERR_NETWORK', `${what}: aborted`, 'never', { cause: err }), retry: 'never' };
  }
  const known = codes.find((c) => c in NETWORK_WORDS);
  const text = known ? `${NETWORK_WORDS[known]} (${known})` : codes[0] ? `${detail} (${codes[0]})` : detail;
  // An unknown host name is a typo far more often than a blip (EAI_AGAIN is the blip): no waiting on it.
  const retry: Retry = known === 'ENOTFOUND' ? 'mirror' : 'again';
  return { error: fail('COSI_ERR_NETWORK', `${what}: ${text}`, retry, { cause: err, details: { code: known ?? codes[0] } }), retry };
}

function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = parseHttpDate(value);
  return at === undefined ? undefined : Math.max(0, at - Date.now());
}

/**
 * Bytes per second while waiting on the network. Time the consumer spends
 * holding us back (between yields) is not counted, so a slow disk does not
 * look like a slow server.
 */
class SpeedGuard {
  private waited = 0;
  private bytes = 0;
  private resumed = performance.now();
  constructor(private readonly minBps: number, private readonly windowMs: number, private readonly what: string) {}

  /** Call when the consumer asks for more. */
  resume(): void {
    this.resumed = performance.now();
  }

  /** Call when `n` bytes arrived; throws a retryable timeout when the window was too slow. */
  arrived(n: number): void {
    if (this.minBps <= 0) return;
    this.waited += performance.now() - this.resumed;
    this.bytes += n;
    if (this.waited < this.windowMs) return;
    const bps = (this.bytes * 1000) / this.waited;
    this.waited = 0;
    this.bytes = 0;
    if (bps < this.minBps) {
      throw fail('COSI_ERR_TIMEOUT', `${this.what}: transfer too slow (${Math.round(bps)} B/s, minimum ${this.minBps} B/s)`, 'again');
    }
  }
}

type RangeAnswer = { kind: 'eof' } | { kind: 'body'; body: Dispatcher.ResponseData['body']; start: number; end: number; url: string };

export class HttpSource implements ByteSource {
  readonly name: string;
  /** Every request sent (redirect hops included) and every body byte received. */
  readonly stats = { requests: 0, bytes: 0 };
  /** Pinned from the first response that carried one; later responses must match it. */
  validator: Validator | undefined;
  /** true once a server answered a range with 206; false when it answered 200 instead. */
  rangeSupported: boolean | undefined;

  private readonly endpoints: Endpoint[];
  private current = 0;
  private knownSize: number | undefined;
  private sizing: Promise<number> | undefined;
  private root = rootController();
  private readonly dispatcher: Dispatcher;
  /** Body chunks are ours alone only from our own Agent; a caller's dispatcher may keep them (recorders, caches). */
  private readonly ownChunks: boolean;
  private readonly headers: Record<string, string>;
  private readonly o: ResolvedOptions;

  constructor(url: string, opts: HttpSourceOptions = {}) {
    this.endpoints = [url, ...(opts.mirrors ?? [])].map(parseEndpoint);
    this.name = this.endpoints[0]!.name;
    this.o = {
      idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      retries: Math.max(0, opts.retries ?? DEFAULTS.retries),
      backoffMs: opts.backoffMs ?? DEFAULTS.backoffMs,
      maxRedirects: opts.maxRedirects ?? DEFAULTS.maxRedirects,
      minBytesPerSecond: opts.minBytesPerSecond ?? DEFAULTS.minBytesPerSecond,
      lowSpeedWindowMs: opts.lowSpeedWindowMs ?? DEFAULTS.lowSpeedWindowMs,
      onEvent: opts.onEvent,
    };
    this.dispatcher = opts.dispatcher ?? sharedAgent(this.o.connectTimeoutMs);
    this.ownChunks = opts.dispatcher === undefined;
    this.headers = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) this.headers[k.toLowerCase()] = v;
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
  async openFull(): Promise<{ body: Readable; size?: number }> {
    const ac = new AbortController();
    const signal = AbortSignal.any([ac.signal, this.root.signal]);
    const retrier = new Retrier(this, signal);
    for (;;) {
      const ep = this.endpoint();
      try {
        const { res, url } = await this.send(ep, 'GET', undefined, undefined, signal);
        const what = `GET ${url}`;
        if (res.statusCode !== 200) {
          await res.body.dump().catch(() => {});
          throw this.statusError(what, res);
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
        return { body: new PumpStream(counted, ac, this.root.signal, this.name), size };
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

  // ---- internals ----

  /** @internal */
  get options(): Readonly<ResolvedOptions> {
    return this.o;
  }

  /** @internal The endpoint to use now; when all are dead a fresh transfer tries them all again. */
  endpoint(): Endpoint {
    if (this.endpoints.every((e) => e.dead)) {
      for (const e of this.endpoints) e.dead = undefined;
      this.current = 0;
    }
    while (this.endpoints[this.current]!.dead) this.current = (this.current + 1) % this.endpoints.length;
    return this.endpoints[this.current]!;
  }

  /**
   * @internal After a failure on `ep`: move to the next live endpoint if there
   * is one. Returns it, or undefined when `ep` is the only one left.
   */
  advance(ep: Endpoint): Endpoint | undefined {
    const n = this.endpoints.length;
    const at = this.endpoints.indexOf(ep);
    for (let i = 1; i < n; i++) {
      const next = this.endpoints[(at + i) % n]!;
      if (!next.dead) {
        // Another transfer may have moved on already; only move the shared cursor from where we were.
        if (this.current === at) this.current = (at + i) % n;
        return next;
      }
    }
    return undefined;
  }

  /** @internal */
  emit(e: HttpSourceEvent): void {
    this.o.onEvent?.(e);
  }

  private async head(): Promise<number> {
    const retrier = new Retrier(this, this.root.signal);
    for (;;) {
      const ep = this.endpoint();
      try {
        const { res, url } = await this.send(ep, 'HEAD', undefined, undefined, this.root.signal);
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
        if (res.statusCode !== 200) throw this.statusError(`HEAD ${url}`, res);
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
    const retrier = new Retrier(this, signal);
    for (;;) {
      if (this.knownSize !== undefined && end > this.knownSize) {
        if (exact) throw this.truncated(offset, length);
        end = Math.max(pos, this.knownSize);
      }
      if (pos >= end) return;
      const ep = this.endpoint();
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
    const ifRange = v ? (isStrongEtag(v.etag) ? v.etag : v.lastModified) : undefined;
    const range = `bytes=${first}-${last}`;
    const { res, url } = await this.send(ep, 'GET', range, ifRange, signal);
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
      const et = header(res.headers, 'etag');
      const lm = header(res.headers, 'last-modified');
      const sameVersion = v !== undefined && ((v.etag && et && sameEtag(v.etag, et)) || (!v.etag && v.lastModified && lm && sameDate(v.lastModified, lm)));
      if (ifRange !== undefined && !sameVersion) {
        throw this.changed(ep, v!.etag && et ? `ETag ${v!.etag} -> ${et}` : v!.lastModified && lm ? `Last-Modified ${v!.lastModified} -> ${lm}` : 'answered 200 to If-Range');
      }
      this.checkValidator(ep, res.headers);
      if (!this.endpoints.some((e) => e.ranged)) this.rangeSupported = false;
      throw fail('COSI_ERR_RANGE_UNSUPPORTED', `${what}: the server ignores Range requests (answered 200 with the whole file)`, 'mirror');
    }
    if (status === 416) {
      await res.body.dump().catch(() => {});
      const size = parseUnsatisfiedContentRange(header(res.headers, 'content-range'));
      if (size !== undefined) {
        this.learnSize(size, ep);
        if (first >= size) return { kind: 'eof' };
      }
      throw this.statusError(what, res);
    }
    await res.body.dump().catch(() => {});
    throw this.statusError(what, res);
  }

  /** Send one request, following redirects; returns the final response and its display URL. */
  private async send(ep: Endpoint, method: 'GET' | 'HEAD', range: string | undefined, ifRange: string | undefined, signal: AbortSignal): Promise<{ res: Dispatcher.ResponseData; url: string }> {
    let url = ep.location ?? ep.url;
    const seen = new Set<string>([url.href]);
    let permanent = true;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...this.headers, 'accept-encoding': 'identity' };
      if (url.origin !== ep.url.origin) for (const h of CREDENTIAL_HEADERS) delete headers[h];
      else if (ep.auth && !headers.authorization) headers.authorization = ep.auth;
      if (range) headers.range = range;
      if (ifRange) headers['if-range'] = ifRange;
      const name = displayUrl(url);
      this.stats.requests++;
      this.emit(range ? { type: 'request', url: name, range } : { type: 'request', url: name });
      let res: Dispatcher.ResponseData;
      try {
        res = await request(this.dispatcher, {
          origin: url.origin,
          path: url.pathname + url.search,
          method,
          headers,
          signal,
          headersTimeout: this.o.idleTimeoutMs,
          bodyTimeout: this.o.idleTimeoutMs,
        });
      } catch (err) {
        throw classify(err, `${method} ${name}`, this.o.idleTimeoutMs).error;
      }
      if (!REDIRECTS.has(res.statusCode)) return { res, url: name };
      await res.body.dump().catch(() => {});
      const location = header(res.headers, 'location');
      if (!location) throw this.statusError(`${method} ${name}`, res);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw fail('COSI_ERR_REDIRECT', `${method} ${name}: redirect to an invalid URL (${location})`, 'mirror');
      }
      next.hash = '';
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw fail('COSI_ERR_REDIRECT', `${method} ${name}: redirect to unsupported ${next.protocol} URL`, 'mirror');
      }
      if (seen.has(next.href)) {
        throw fail('COSI_ERR_REDIRECT', `${method} ${ep.name}: redirect loop (${name} -> ${displayUrl(next)})`, 'mirror');
      }
      if (hop >= this.o.maxRedirects) {
        throw fail('COSI_ERR_REDIRECT', `${method} ${ep.name}: more than ${this.o.maxRedirects} redirects`, 'mirror');
      }
      permanent &&= PERMANENT_REDIRECTS.has(res.statusCode);
      if (permanent) ep.location = next;
      seen.add(next.href);
      url = next;
    }
  }

  private statusError(what: string, res: Dispatcher.ResponseData): CosiError {
    const status = res.statusCode;
    const text = res.statusText || STATUS_CODES[status] || '';
    // 5xx, 408 and 429 are the server's trouble and may pass; other 4xx will not change on retry.
    const transient = status >= 500 || status === 408 || status === 429;
    const wait = transient ? retryAfterMs(header(res.headers, 'retry-after')) : undefined;
    return fail('COSI_ERR_HTTP_STATUS', `${what}: ${status}${text ? ` ${text}` : ''}`, transient ? 'again' : 'mirror', {
      details: { status, ...(wait !== undefined ? { retryAfterMs: wait } : {}) },
    });
  }

  /** Pin the first validator seen; refuse any later response that contradicts it. */
  private checkValidator(ep: Endpoint, headers: Dispatcher.ResponseData['headers']): void {
    const etag = header(headers, 'etag');
    const lastModified = header(headers, 'last-modified');
    const pinned = ep.validator;
    if (!pinned) {
      if (etag !== undefined || lastModified !== undefined) {
        ep.validator = { ...(etag !== undefined ? { etag } : {}), ...(lastModified !== undefined ? { lastModified } : {}) };
        this.validator ??= ep.validator;
      }
      return;
    }
    if (pinned.etag !== undefined && etag !== undefined) {
      if (!sameEtag(pinned.etag, etag)) throw this.changed(ep, `ETag ${pinned.etag} -> ${etag}`);
      return;
    }
    if (pinned.lastModified !== undefined && lastModified !== undefined && !sameDate(pinned.lastModified, lastModified)) {
      throw this.changed(ep, `Last-Modified ${pinned.lastModified} -> ${lastModified}`);
    }
  }

  private learnSize(size: number, ep: Endpoint): void {
    if (this.knownSize === undefined) this.knownSize = size;
    else if (this.knownSize !== size) {
      // Mirrors have their own validators, so size is what ties them together.
      throw ep === this.endpoints[0] || this.endpoints.length === 1
        ? this.changed(ep, `size ${this.knownSize} -> ${size}`)
        : fail('COSI_ERR_SOURCE_CHANGED', `${ep.name} is ${size} bytes, not ${this.knownSize} like ${this.name}; not the same file`, 'mirror');
    }
  }

  private changed(ep: Endpoint, how: string): CosiError {
    return fail('COSI_ERR_SOURCE_CHANGED', `${ep.name} changed on the server during the transfer (${how}); refusing to splice two versions`, 'never');
  }

  private truncated(offset: number, length: number): CosiError {
    return fail('COSI_ERR_TRUNCATED', `${this.name} is ${this.knownSize} bytes: it ends before bytes ${offset}-${offset + length - 1}`, 'never');
  }
}

/**
 * The failure budget of one transfer: classifies, picks the next mirror,
 * backs off, and throws once the budget is spent or the error is final.
 */
class Retrier {
  private failures = 0;
  private sinceFailure = 0;

  constructor(private readonly src: HttpSource, private readonly signal: AbortSignal) {}

  progressed(n: number): void {
    this.sinceFailure += n;
  }

  async failed(err: unknown, offset: number, ep: Endpoint): Promise<void> {
    if (this.signal.aborted) throw new CosiError('COSI_ERR_NETWORK', `${this.src.name}: transfer aborted`, { cause: err });
    const { options: o } = this.src;
    const { error, retry } = classify(err, `GET ${ep.name}`, o.idleTimeoutMs);
    if (retry === 'never') throw error;
    if (this.sinceFailure >= PROGRESS_RESETS_RETRIES) this.failures = 0;
    this.sinceFailure = 0;
    this.failures++;
    if (retry === 'mirror') ep.dead = error;
    const next = this.src.advance(ep);
    if (!next && retry === 'mirror') {
      ep.dead = undefined;
      throw error;
    }
    if (this.failures > o.retries) {
      throw new CosiError(error.code, `${error.message} (gave up after ${this.failures} attempts)`, { cause: error.cause ?? error, details: error.details });
    }
    const to = next ?? ep;
    if (next) this.src.emit({ type: 'mirror', from: ep.name, to: next.name, offset });
    this.src.emit({ type: 'retry', url: to.name, offset, attempt: this.failures, error: error.message });
    const exp = o.backoffMs * 2 ** (this.failures - 1);
    const jittered = exp * (0.5 + Math.random());
    const hinted = typeof error.details?.retryAfterMs === 'number' ? error.details.retryAfterMs : 0;
    try {
      await sleep(Math.min(MAX_BACKOFF_MS, Math.max(jittered, hinted)), undefined, { signal: this.signal });
    } catch {
      throw new CosiError('COSI_ERR_NETWORK', `${this.src.name}: transfer aborted`, { cause: error });
    }
  }
}

/**
 * A Readable fed by an async generator with back-pressure: the generator is
 * only resumed when the consumer wants more, so undici's body (and the socket
 * under it) pauses with the consumer. Destroying the stream aborts the request
 * at once, even in the middle of a stall.
 */
class PumpStream extends Readable {
  private started = false;
  private wake: (() => void) | undefined;
  private readonly onParentAbort = (): void => {
    this.destroy(new CosiError('COSI_ERR_NETWORK', `${this.label}: transfer aborted (source closed)`));
  };

  constructor(
    private readonly source: () => AsyncGenerator<Buffer>,
    private readonly ac: AbortController,
    private readonly parent: AbortSignal,
    private readonly label: string,
    /** Mark chunks as this stream's alone (see markExclusive): read() keeps some, stream() never. */
    private readonly exclusive = false,
  ) {
    super({ highWaterMark: STREAM_HIGH_WATER });
    if (parent.aborted) queueMicrotask(this.onParentAbort);
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      void this.run();
    } else {
      const w = this.wake;
      this.wake = undefined;
      w?.();
    }
  }

  private async run(): Promise<void> {
    try {
      for await (const chunk of this.source()) {
        if (this.destroyed) return;
        if (this.exclusive) markExclusive(chunk);
        if (!this.push(chunk)) await new Promise<void>((resolve) => (this.wake = resolve));
        if (this.destroyed) return;
      }
      if (!this.destroyed) this.push(null);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.parent.removeEventListener('abort', this.onParentAbort);
    this.ac.abort();
    const w = this.wake;
    this.wake = undefined;
    w?.();
    cb(err);
  }
}

/** A local path or file:// URL as a FileSource, an http(s) URL as an HttpSource. */
export function openSource(urlOrPath: string, opts?: HttpSourceOptions): FileSource | HttpSource {
  if (/^https?:\/\//i.test(urlOrPath)) return new HttpSource(urlOrPath, opts);
  if (/^file:/i.test(urlOrPath)) {
    try {
      return new FileSource(fileURLToPath(urlOrPath));
    } catch {
      throw new CosiError('COSI_ERR_USAGE', `not a usable file URL: ${urlOrPath}`);
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(urlOrPath)) {
    throw new CosiError('COSI_ERR_USAGE', `unsupported URL scheme in ${urlOrPath.split('//')[0]}//...: use http, https, file or a path`);
  }
  return new FileSource(urlOrPath);
}
