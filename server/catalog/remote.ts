/**
 * Remote catalog entries: .cosi archives on another HTTP(S) server (a CDN,
 * a bucket, a static host), indexed and served through HttpSource, the same
 * byte-source code the client uses. Indexing reads only what checkArchive
 * reads (marker, metadata, tar headers, the primary-GPT image), each as a
 * ranged GET; serving streams ranges of the origin through the same source.
 *
 * Each entry keeps the HttpSource that indexed it, whose validator (the
 * origin's ETag or Last-Modified) is pinned from the first response: a
 * replaced origin file is refused mid-transfer (COSI_ERR_SOURCE_CHANGED)
 * instead of spliced, and that failure, like every rescan, re-indexes it.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { errorClassOf, oneLine } from '../../shared/errors.js';
import { displayUrl } from '../../shared/transport/http/endpoints.js';
import type { HttpSourceOptions } from '../../shared/transport/http/options.js';
import { HttpSource } from '../../shared/transport/http/source.js';
import { parseHttpDate } from '../../shared/transport/range.js';
import { StoreSource } from '../../shared/transport/store/source.js';
import { isStoreUrl } from '../../shared/transport/store/url.js';
import type { OpenArchive } from './open-archive.js';
import { readRemoteList, specKey, type RemoteSpec } from './remote-spec.js';
import { indexArchive, type FileIdentity, type IndexRecord } from './indexer.js';
import { eachLimited } from './scanner.js';
import { listStorePrefix } from './store-listing.js';
import type { Metrics } from '../metrics.js';

/** Archives indexed at once: each is a handful of small ranged reads, and a bucket may hold thousands. */
const INDEX_PARALLEL = 16;
/** How long a --redirect Location to a store object is valid: the client follows it at once. */
export const REDIRECT_URL_TTL_SECONDS = 900;

type RemoteSource = HttpSource | StoreSource;

function shownUrl(url: string): string {
  return isStoreUrl(url) || /^(s3|az):/.test(url) ? url : displayUrl(new URL(url));
}

export interface RemoteCatalogOptions {
  /** From --remote. */
  specs: RemoteSpec[];
  /** From --remote-list: re-read on every refresh, so entries come and go without a restart. */
  listFile?: string;
  metrics?: Metrics;
  log?: (event: Record<string, unknown>) => void;
  /** --max-metadata-size: a larger metadata.json makes the archive invalid, unread. */
  maxMetadataBytes?: number;
  /** For tests: timeouts and retries of the origin requests. */
  sourceOptions?: HttpSourceOptions;
  /** Where store credentials come from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

interface Entry {
  spec: RemoteSpec;
  /** Pinned to the version that was indexed. */
  source: RemoteSource;
  record: IndexRecord;
  /** What the origin said when it was indexed. */
  probe: Probe;
  /** Set when a transfer saw the origin change: the next refresh re-indexes without asking. */
  stale?: boolean;
}

/** What the origin says about its file right now, from one HEAD. */
interface Probe {
  size: number;
  etag?: string;
  lastModified?: string;
}

function sameProbe(a: Probe, b: Probe): boolean {
  if (a.size !== b.size) return false;
  if (a.etag !== undefined || b.etag !== undefined) return a.etag === b.etag;
  return a.lastModified === b.lastModified;
}

/** Our strong validator for a remote archive: changes whenever the origin's does. */
function remoteEtag(url: string, p: Probe, metadataSha384 = ''): string {
  const h = createHash('sha256').update(`${url}\n${p.size}\n${p.etag ?? ''}\n${p.lastModified ?? ''}\n${metadataSha384}`).digest('base64url');
  return `"r-${h.slice(0, 27)}"`;
}

export class RemoteCatalog {
  private specs: RemoteSpec[];
  private entries = new Map<string, Entry>();
  /** The last good listing of each store prefix: a listing that fails keeps it. */
  private listings = new Map<string, RemoteSpec[]>();
  private refreshing: Promise<void> | undefined;
  private readonly sourceOptions: HttpSourceOptions;

  constructor(private readonly opts: RemoteCatalogOptions) {
    this.specs = opts.specs;
    // Indexing is on the request path of nobody, but a dead origin must not stall a rescan for minutes.
    this.sourceOptions = { retries: 2, idleTimeoutMs: 20_000, connectTimeoutMs: 10_000, ...opts.sourceOptions };
  }

  /** Load the list file and index everything; a list that cannot be read is a startup error. */
  async start(): Promise<void> {
    if (this.opts.listFile) this.specs = mergeSpecs(this.opts.specs, await readRemoteList(this.opts.listFile));
    await this.refresh();
  }

  get size(): number {
    return this.entries.size;
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Where a client can read a remote image itself (for redirects): its URL, or a short-lived signed URL of a store object. */
  async originOf(id: string): Promise<string | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    return e.source instanceof StoreSource ? e.source.signedUrl(REDIRECT_URL_TTL_SECONDS) : e.spec.url;
  }

  records(): IndexRecord[] {
    return [...this.entries.values()].map((e) => e.record);
  }

  /** Ids of remote images holding an image with this SHA-384. */
  blobHolders(sha: string): string[] {
    const out: string[] = [];
    for (const [id, e] of this.entries) {
      if (e.record.archive?.partitions.some((p) => p.info.image.sha384?.toLowerCase() === sha)) out.push(id);
    }
    return out;
  }

  /** One refresh at a time; callers during one share it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.refreshOnce().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    if (this.opts.listFile) {
      try {
        this.specs = mergeSpecs(this.opts.specs, await readRemoteList(this.opts.listFile));
      } catch (err) {
        // A list being rewritten (or briefly broken) keeps the last good one.
        this.opts.log?.({ event: 'remote-list-error', file: this.opts.listFile, message: oneLine(err) });
      }
    }
    const wanted = new Map<string, RemoteSpec>();
    // A flag or list entry naming an id wins over a listed object with the same id.
    for (const spec of await this.expand()) if (!wanted.has(spec.id) || !spec.from) wanted.set(spec.id, spec);
    for (const id of [...this.entries.keys()]) if (!wanted.has(id)) this.entries.delete(id);
    // Origins are independent: check them side by side, a bounded number at a time.
    await eachLimited([...wanted.values()], INDEX_PARALLEL, (spec) => this.refreshOne(spec));
  }

  /** The specs with every store prefix replaced by the objects listed under it now. */
  private async expand(): Promise<RemoteSpec[]> {
    const out: RemoteSpec[] = [];
    const prefixes = this.specs.filter((s) => s.prefix);
    for (const k of [...this.listings.keys()]) if (!prefixes.some((p) => specKey(p) === k)) this.listings.delete(k);
    await Promise.all(
      prefixes.map(async (p) => {
        const t0 = performance.now();
        try {
          const l = await listStorePrefix(p, this.opts.env);
          this.listings.set(specKey(p), l.specs);
          this.opts.log?.({ event: 'store-listed', prefix: p.url, objects: l.specs.length, skipped: l.skipped.length, requests: l.requests, ms: Math.round(performance.now() - t0) });
        } catch (err) {
          // A store that is down or refuses us for a moment keeps its last listing; transfers fail on their own.
          this.opts.log?.({ event: 'store-list-error', prefix: p.url, message: oneLine(err) });
          if (!this.listings.has(specKey(p))) throw err;
        }
      }),
    );
    for (const s of this.specs) out.push(...(s.prefix ? (this.listings.get(specKey(s)) ?? []) : [s]));
    return out;
  }

  private async refreshOne(spec: RemoteSpec): Promise<void> {
    const old = this.entries.get(spec.id);
    if (old && old.spec.url === spec.url && !old.stale && spec.listed) {
      // The listing said what a HEAD would: the same ETag and size keep the index, unless the
      // last try failed on the way (network, access), which another try may not.
      const sameVersion = old.probe.etag === spec.listed.etag && old.probe.size === spec.listed.size;
      if (sameVersion && !failedOnTheWay(old.record)) return;
    } else if (old && old.spec.url === spec.url && !old.stale && old.record.archive) {
      const probe = await this.probe(spec.url).catch((err: unknown) => err);
      if (!(probe instanceof Error) && sameProbe(probe as Probe, old.probe)) return;
      if (probe instanceof Error) {
        // An origin that is down for a moment keeps its listing; transfers will fail on their own.
        this.opts.log?.({ event: 'remote-unreachable', id: spec.id, url: shownUrl(spec.url), message: oneLine(probe) });
        return;
      }
    }
    this.entries.set(spec.id, await this.index(spec));
  }

  private async probe(url: string): Promise<Probe> {
    const src = this.sourceFor({ id: '', url });
    const size = await src.size();
    return { size, etag: src.validator?.etag, lastModified: src.validator?.lastModified };
  }

  /** A store object reads through signed URLs, held from the start to the version its listing named. */
  private sourceFor(spec: RemoteSpec): RemoteSource {
    if (!isStoreUrl(spec.url)) return new HttpSource(spec.url, this.sourceOptions);
    return new StoreSource(spec.url, { ...this.sourceOptions, env: this.opts.env, ...(spec.listed ? { expect: spec.listed } : {}) });
  }

  private probeOf(src: RemoteSource, size: number): Probe {
    return { size, etag: src.validator?.etag, lastModified: src.validator?.lastModified };
  }

  private async index(spec: RemoteSpec): Promise<Entry> {
    const source = this.sourceFor(spec);
    const shown = shownUrl(spec.url);
    this.opts.metrics?.inc('cosi_index_runs_total');
    const t0 = performance.now();
    let size = 0;
    let sizeError: unknown;
    try {
      size = await source.size();
    } catch (err) {
      sizeError = err;
    }
    const lm = source.validator?.lastModified ? parseHttpDate(source.validator.lastModified) : undefined;
    const identity: FileIdentity = { dev: 0, ino: 0, size, mtimeMs: lm ?? Date.now() };
    const file = { id: spec.id, relPath: `${spec.id}.cosi`, path: shown, identity };
    let record: IndexRecord;
    if (sizeError !== undefined) {
      const reason = oneLine(sizeError);
      record = {
        ...file,
        etag: remoteEtag(spec.url, { size }),
        lastModified: new Date(Math.floor(identity.mtimeMs / 1000) * 1000),
        valid: false,
        reason,
        errors: [{ field: 'file', rule: (sizeError as { code?: string }).code ?? 'unreachable', message: reason }],
        warnings: [],
        indexedAt: new Date(),
        indexMs: performance.now() - t0,
      };
    } else {
      record = await indexArchive(source, file, { maxMetadataBytes: this.opts.maxMetadataBytes });
      record.etag = remoteEtag(spec.url, this.probeOf(source, size), record.archive?.metadataSha384);
    }
    record.origin = spec.url;
    if (!record.valid) this.opts.metrics?.inc('cosi_index_errors_total');
    this.opts.log?.({ event: 'indexed', id: spec.id, remote: shown, valid: record.valid, reason: record.reason, ms: Math.round(record.indexMs), requests: source.stats.requests, bytes: source.stats.bytes });
    return { spec, source, record, probe: this.probeOf(source, size) };
  }

  /** Serve from the indexed version; a transfer that finds the origin changed marks it for re-indexing. */
  open(id: string): OpenArchive | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    const onError = (err: Error): void => {
      if ((err as { code?: string }).code !== 'COSI_ERR_SOURCE_CHANGED' || e.stale) return;
      e.stale = true;
      this.opts.log?.({ event: 'remote-changed', id, message: oneLine(err) });
      void this.refresh().catch(() => {});
    };
    return {
      record: e.record,
      stream(offset: number, length: number): Readable {
        const s = e.source.stream(offset, length);
        s.on('error', onError);
        return s;
      },
      release: async () => {},
    };
  }
}

/** An index that failed on the way (unreachable, refused, timed out, changed while read), not because of the archive. */
function failedOnTheWay(r: IndexRecord): boolean {
  if (r.archive) return false;
  const code = r.errors[0]?.rule;
  // A version that changed while it was read is worth another try too.
  return code !== undefined && (errorClassOf(code) === 'network' || code === 'COSI_ERR_SOURCE_CHANGED');
}

/** Flags first; a list entry with the same id (or prefix) as a flag is ignored (the flag is explicit). */
function mergeSpecs(flags: RemoteSpec[], listed: RemoteSpec[]): RemoteSpec[] {
  const keys = new Set(flags.map(specKey));
  return [...flags, ...listed.filter((s) => !keys.has(specKey(s)))];
}
