/**
 * Opening local archives for a request: handles kept between requests
 * (HandleCache) and confirmed with one lstat per path and event-loop turn,
 * and the index records, in an LRU keyed by file identity, that describe
 * the bytes behind each handle. A file changed since it was indexed is
 * indexed again through the very handle it is then served from. Names that
 * reach the same file (a symlink inside the root, a hard link) share its one
 * record, each seeing it under its own id.
 */
import { lstatSync, type Stats } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { HttpError } from '../errors.js';
import { HandleSource, streamRange } from '../../shared/transport/handle-source.js';
import type { Metrics } from '../metrics.js';
import { HandleCache, type Handle } from './handle-cache.js';
import { identityKey, identityOf, indexArchive, recordWeight, sameIdentity, type FileIdentity, type IndexRecord } from './indexer.js';
import type { OpenArchive } from './open-archive.js';
import type { Known } from './scanner.js';

export interface OpenerOptions {
  /** Archive descriptors held open (cached between requests, or busy). */
  maxOpenFiles?: number;
  /** An archive handle idle this long is closed (default 30 s). */
  handleIdleMs?: number;
  indexCacheEntries?: number;
  /** --max-metadata-size: a larger metadata.json makes the archive invalid, unread. */
  maxMetadataBytes?: number;
  metrics?: Metrics;
  log?: (event: Record<string, unknown>) => void;
  /** A resolved path is inside the catalog root. */
  inside: (real: string) => boolean;
  /** What --verify found for the file with this identity key, carried over when it is indexed again. */
  verifiedArchive: (key: string) => IndexRecord['archive'] | undefined;
  /** The path of `k` now holds other bytes than the scan saw. */
  changed: (k: Known, identity: FileIdentity) => void;
}

/** An archive served from a cached handle, for the fast path. */
export interface CachedArchive {
  record: IndexRecord;
  fd: number;
  release(): void;
}

export class ArchiveOpener {
  private readonly records: LRUCache<string, IndexRecord>;
  private readonly handles: HandleCache;
  /** Archives handed out and not yet released. */
  private openFiles = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: OpenerOptions) {
    this.records = new LRUCache<string, IndexRecord>({
      max: Math.max(16, opts.indexCacheEntries ?? 10_000),
      maxSize: 512 * 1024 * 1024,
      sizeCalculation: recordWeight,
    });
    this.handles = new HandleCache({ max: opts.maxOpenFiles ?? 512, idleMs: opts.handleIdleMs ?? 30_000 });
  }

  /** Archives handed out to transfers and not yet released. */
  get openHandles(): number {
    return this.openFiles;
  }

  /** Archive descriptors open, idle in the handle cache or busy. */
  get openDescriptors(): number {
    return this.handles.open;
  }

  /** Close idle handles from now on. */
  startSweeping(): void {
    const idle = this.opts.handleIdleMs ?? 30_000;
    this.sweeper = setInterval(() => this.handles.sweep(), Math.max(100, Math.min(idle, 10_000)));
    this.sweeper.unref();
  }

  /** Cached handles close now, busy ones when their transfer releases them. */
  close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    return this.handles.closeAll();
  }

  /** After a scan: keep only handles on files it saw as they were. */
  retain(found: Iterable<Known>): void {
    // A handle on a file the scan no longer sees as it was (removed, replaced) is closed now,
    // not at its next request: an open descriptor would keep a deleted file's blocks in use.
    const live = new Map<string, FileIdentity>();
    for (const k of found) if (!k.refused) live.set(k.path, k.identity);
    this.handles.retain((path, identity) => {
      const now = live.get(path);
      return now !== undefined && sameIdentity(now, identity);
    });
  }

  /** The cached record for this identity, if any; indexes nothing (for gauges). */
  peekRecord(identity: FileIdentity): IndexRecord | undefined {
    return this.records.peek(identityKey(identity));
  }

  /** The record for what the scan saw; opens the file only when the identity is new. */
  async recordFor(k: Known): Promise<IndexRecord> {
    if (k.refused) return refusedRecord(k);
    const cached = this.records.get(identityKey(k.identity));
    if (cached) return recordAs(cached, k);
    // Indexing alone does not keep the file open: a scan of thousands must not hoard descriptors.
    const a = await this.open(k, false);
    const rec = a.record;
    await a.release();
    return rec;
  }

  /**
   * The lstat of `path`, shared by the requests of one event-loop turn: under load dozens of
   * requests for the same archive arrive in one poll phase, and they may as well be one instant.
   * Each still sees the file as it was during its own turn, so a replacement is noticed from the
   * next turn on; errors are not kept.
   */
  private lstatThisTurn(path: string): Stats {
    let st = this.turnStats.get(path);
    if (st === undefined) {
      st = lstatSync(path);
      if (this.turnStats.size === 0) setImmediate(this.endTurn);
      this.turnStats.set(path, st);
    }
    return st;
  }
  private readonly turnStats = new Map<string, Stats>();
  private readonly endTurn = (): void => this.turnStats.clear();

  /**
   * The hit path of open() without a promise: a local archive whose handle and record are
   * cached and still current (the same lstat identity check as open()). Undefined whenever
   * anything would need real work (first open, a changed file, reindexing): then open().
   */
  openCached(k: Known): CachedArchive | undefined {
    let st: Stats;
    try {
      st = this.lstatThisTurn(k.path);
    } catch {
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const identity = identityOf(st);
    if (!sameIdentity(k.identity, identity)) return undefined;
    const h = this.handles.acquire(k.path, identity);
    if (!h) return undefined;
    const shared = this.records.get(identityKey(identity));
    if (!shared) {
      this.handles.release(h);
      return undefined;
    }
    const record = recordAs(shared, k);
    this.openFiles++;
    let released = false;
    return {
      record,
      fd: h.fd,
      release: () => {
        if (released) return;
        released = true;
        this.openFiles--;
        this.handles.release(h);
      },
    };
  }

  /**
   * Open a scanned file for serving. The record returned always describes the
   * bytes behind the handle: a file changed since it was indexed is indexed
   * again first, through the same handle.
   */
  async open(k: Known, cache = true): Promise<OpenArchive> {
    this.openFiles++;
    let h: Handle | undefined;
    try {
      // Per request, one lstat: the cached handle serves only while the path still names the
      // very file (dev, ino, size, mtime) it was opened on. A symlink put in its place has
      // another identity, so it misses and takes the full path below.
      // Synchronous: a metadata lookup in the dentry cache costs less than the thread-pool hop.
      const st = this.lstatThisTurn(k.path);
      if (st.isFile()) h = this.handles.acquire(k.path, identityOf(st));
      else this.handles.forget(k.path); // no longer a plain file: whatever was cached is stale
      h ??= await this.openFresh(k, cache);
      const identity = h.identity;
      const key = identityKey(identity);
      const record = recordAs(this.records.get(key) ?? (await this.indexOnce(key, k, h)), k);
      if (!sameIdentity(k.identity, identity)) {
        // The path now holds other bytes than the scan saw: remember them, and rescan soon for the rest.
        this.opts.changed(k, identity);
      }
      const handle = h;
      let released = false;
      // Streams read the descriptor itself: the handle may close only once every one of them has.
      const streams = new Set<Readable>();
      return {
        record,
        fh: handle.fh,
        fd: handle.fd,
        stream: (offset, length) => {
          const s = streamRange(handle.fd, offset, length);
          streams.add(s);
          s.once('close', () => streams.delete(s));
          return s;
        },
        release: async () => {
          if (released) return;
          released = true;
          await closeAll(streams);
          this.openFiles--;
          this.handles.release(handle);
        },
      };
    } catch (err) {
      this.openFiles--;
      if (h) this.handles.release(h);
      if (err instanceof HttpError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.handles.forget(k.path);
        throw new HttpError(404, 'NOT_FOUND', `no image ${k.id} (removed)`);
      }
      throw new HttpError(500, 'COSI_ERR_IO', `cannot open ${k.id}: ${code ?? (err as Error).message}`);
    }
  }

  /** Index runs in progress, by identity key: names of one file scanned at once wait for one run. */
  private readonly indexing = new Map<string, Promise<IndexRecord>>();

  /** Index the file behind `h` (the caller holds it until this settles), once however many ask. */
  private indexOnce(key: string, k: Known, h: Handle): Promise<IndexRecord> {
    let run = this.indexing.get(key);
    if (!run) {
      run = (async () => {
        this.opts.metrics?.inc('cosi_index_runs_total');
        const identity = h.identity;
        const rec = await indexArchive(new HandleSource(k.relPath, h.fh, identity.size), { id: k.id, relPath: k.relPath, path: k.path, identity }, { maxMetadataBytes: this.opts.maxMetadataBytes });
        if (!rec.valid) this.opts.metrics?.inc('cosi_index_errors_total');
        const earlier = this.opts.verifiedArchive(key);
        if (earlier && rec.archive) rec.archive = earlier;
        this.records.set(key, rec);
        this.opts.log?.({ event: 'indexed', id: k.id, valid: rec.valid, reason: rec.reason, ms: Math.round(rec.indexMs) });
        return rec;
      })().finally(() => this.indexing.delete(key));
      this.indexing.set(key, run);
    }
    return run;
  }

  /** The slow path: resolve, check the root, open, fstat; the handle is cached for the next request. */
  private async openFresh(k: Known, cache: boolean): Promise<Handle> {
    if (!this.handles.reserve()) {
      throw new HttpError(503, 'BUSY', 'too many open files; retry shortly', { 'Retry-After': '1' });
    }
    let fh: FileHandle | undefined;
    try {
      // The scan's real path could have become a symlink since: check again.
      const real = await realpath(k.path);
      if (!this.opts.inside(real)) throw new HttpError(404, 'NOT_FOUND', `no image ${k.id}`);
      fh = await open(real, 'r');
      const st = await fh.stat();
      if (!st.isFile()) throw new HttpError(404, 'NOT_FOUND', `no image ${k.id}`);
      // Cached under the scanned path only when that path is the file itself: lstat on it must
      // be able to confirm the identity next time.
      return this.handles.adopt(k.path, fh, identityOf(st), cache && real === k.path && !this.closed);
    } catch (err) {
      this.handles.unreserve();
      await fh?.close().catch(() => {});
      throw err;
    }
  }
}

/** Destroy what is still open (a transfer cut short) and wait until no read is in flight. */
async function closeAll(streams: Set<Readable>): Promise<void> {
  if (streams.size === 0) return;
  await Promise.all(
    [...streams].map((s) => {
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
      s.destroy();
      return closed;
    }),
  );
}

/** Per shared record, its views under other names (aliases, or a file renamed since it was indexed). */
const views = new WeakMap<IndexRecord, Map<string, IndexRecord>>();

/**
 * The record of the file `k` names, under k's own id and path. Index records are kept per file
 * identity, so every name of one file (a symlink beside its target, a hard link) shares one
 * record and one index run; only the names differ.
 */
export function recordAs(shared: IndexRecord, k: Known): IndexRecord {
  if (shared.id === k.id && shared.relPath === k.relPath && shared.path === k.path && shared.aliasOf === k.aliasOf) return shared;
  let byId = views.get(shared);
  if (!byId) views.set(shared, (byId = new Map()));
  let v = byId.get(k.id);
  if (!v || v.relPath !== k.relPath || v.aliasOf !== k.aliasOf || v.path !== k.path) {
    // A shallow copy: the archive view (and what --verify marks in it) stays shared.
    v = { ...shared, id: k.id, relPath: k.relPath, path: k.path, aliasOf: k.aliasOf };
    byId.set(k.id, v);
  }
  return v;
}

/** The record of a file that must never be opened: listed as invalid, with the reason. */
function refusedRecord(k: Known): IndexRecord {
  return {
    id: k.id,
    relPath: k.relPath,
    path: k.path,
    identity: k.identity,
    etag: '"refused"',
    lastModified: new Date(Math.floor(k.identity.mtimeMs / 1000) * 1000),
    valid: false,
    reason: k.refused,
    errors: [{ field: 'file', rule: 'outside-root', message: k.refused! }],
    warnings: [],
    indexedAt: new Date(),
    indexMs: 0,
  };
}
