/**
 * One store object as a ByteSource. The object is read over plain HTTPS
 * through a short-lived presigned (S3) or SAS (Azure) URL with HttpSource,
 * so resume, If-Range, validators, timeouts and retries are exactly those
 * of any HTTP URL. The URL is signed again before it expires; the new
 * HttpSource is held to the version (ETag and size) the first one pinned,
 * so a replaced object is refused (COSI_ERR_SOURCE_CHANGED), never spliced.
 */
import { Readable } from 'node:stream';
import { CosiError, isCosiError } from '../../errors.js';
import type { HttpSourceOptions } from '../http/options.js';
import { HttpSource } from '../http/source.js';
import type { ByteSource } from '../source.js';
import { CREDENTIAL_HINT, type StoreBackend } from './backend.js';
import { backendFor } from './backends.js';
import { parseStoreUrl, storeUrl, type StoreLocation } from './url.js';

export interface StoreSourceOptions extends HttpSourceOptions {
  /** How long each signed URL is valid; a new one is signed after half of it. Default 1 hour. */
  urlTtlSeconds?: number;
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_TTL = 3600;

export class StoreSource implements ByteSource {
  readonly name: string;
  private readonly loc: StoreLocation;
  private current: { http: HttpSource; signedAt: number } | undefined;
  private signing: Promise<HttpSource> | undefined;
  /** Sources retired by a re-sign still count: requests and bytes of the whole read. */
  private retired = { requests: 0, bytes: 0 };
  private readonly ttl: number;

  constructor(
    urlOrLocation: string | StoreLocation,
    private readonly opts: StoreSourceOptions = {},
  ) {
    this.loc = typeof urlOrLocation === 'string' ? parseStoreUrl(urlOrLocation) : urlOrLocation;
    if (this.loc.key === '' || this.loc.key.endsWith('/')) {
      const shown = storeUrl(this.loc);
      throw new CosiError('COSI_ERR_USAGE', `${shown} names a prefix, not an object: give an object's key, such as ${shown.endsWith('/') ? shown : `${shown}/`}IMAGE.cosi`);
    }
    this.name = storeUrl(this.loc);
    this.ttl = Math.max(60, opts.urlTtlSeconds ?? DEFAULT_TTL);
  }

  get stats(): { requests: number; bytes: number } {
    const s = this.current?.http.stats;
    return { requests: this.retired.requests + (s?.requests ?? 0), bytes: this.retired.bytes + (s?.bytes ?? 0) };
  }

  /** The version pinned by the first response (ETag, Last-Modified), as HttpSource reports it. */
  get validator(): HttpSource['validator'] {
    return this.current?.http.validator;
  }

  /** A fresh signed URL for the same object (for a redirect), valid for `ttlSeconds`. */
  async signedUrl(ttlSeconds: number): Promise<string> {
    return (await this.backend()).signedUrl(this.loc.key, ttlSeconds);
  }

  async size(): Promise<number> {
    return this.explain(async () => (await this.http()).size());
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.explain(async () => (await this.http()).read(offset, length));
  }

  stream(offset: number, length: number): Readable {
    const c = this.current;
    if (c && !this.expiring(c.signedAt)) return c.http.stream(offset, length);
    // Rare: a stream before any read, or after half the URL's life; sign first, then hand over.
    const self = this;
    return Readable.from(
      (async function* () {
        const http = await self.explain(() => self.http());
        yield* http.stream(offset, length);
      })(),
      { objectMode: false },
    );
  }

  async close(): Promise<void> {
    await this.current?.http.close();
  }

  private backend(): Promise<StoreBackend> {
    return backendFor(this.loc, this.opts.env);
  }

  private expiring(signedAt: number): boolean {
    return Date.now() - signedAt > (this.ttl * 1000) / 2;
  }

  private http(): Promise<HttpSource> {
    const c = this.current;
    if (c && !this.expiring(c.signedAt)) return Promise.resolve(c.http);
    this.signing ??= this.sign().finally(() => (this.signing = undefined));
    return this.signing;
  }

  private async sign(): Promise<HttpSource> {
    const signedAt = Date.now();
    const url = await (await this.backend()).signedUrl(this.loc.key, this.ttl);
    const old = this.current?.http;
    let expect: HttpSourceOptions['expect'];
    if (old) {
      const size = await old.size();
      expect = { size, ...old.validator };
      this.retired.requests += old.stats.requests;
      this.retired.bytes += old.stats.bytes;
    }
    const http = new HttpSource(url, { ...this.opts, ...(expect ? { expect } : {}), label: this.name, mirrors: undefined });
    this.current = { http, signedAt };
    return http;
  }

  /** An authorization failure says where credentials come from; nothing else changes. */
  private async explain<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isCosiError(err, 'COSI_ERR_HTTP_STATUS')) {
        const status = err.details?.['status'];
        if (status === 401 || status === 403) {
          throw new CosiError('COSI_ERR_HTTP_STATUS', `${this.name}: access denied (HTTP ${status}): ${CREDENTIAL_HINT[this.loc.kind]}`, { details: { status } });
        }
        if (status === 404) throw new CosiError('COSI_ERR_HTTP_STATUS', `${this.name}: no such object (HTTP 404)`, { details: { status } });
      }
      throw err;
    }
  }
}
