/**
 * The set of archives under the root: found by a recursive scan, kept fresh
 * by fs.watch plus a periodic rescan (watchers miss events on some
 * filesystems), with index records cached in an LRU keyed by file identity.
 *
 * A request never names a filesystem path: it names an id, the id maps to a
 * path found by the scan, and the opened handle's fstat picks the index
 * record. So a file replaced by an atomic rename is reindexed before a single
 * byte of it is served, and old offsets never meet new bytes.
 */
import { lstatSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { lstat, open, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { CosiError } from '../../shared/errors.js';
import { HttpError } from '../http/errors.js';
import { HandleCache, type Handle } from './handle-cache.js';
import { HandleSource, streamRange } from '../../shared/transport/handle-source.js';
import { identityKey, identityOf, indexArchive, recordWeight, sameIdentity, type FileIdentity, type IndexRecord } from './indexer.js';
import type { Metrics } from '../metrics.js';
import type { RemoteCatalog } from './remote.js';
import { verifyRecord } from './verify.js';

export const COSI_EXT = '.cosi';

/** Files stat'ed or indexed at once during a scan. */
const SCAN_PARALLEL = 8;

/** fn over every item, at most `limit` running at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** What the scan learned about one file; cheap, kept for every file. */
interface Known {
  id: string;
  relPath: string;
  /** Real path (symlinks resolved, inside the root). */
  path: string;
  identity: FileIdentity;
  /** Set when the file must never be opened (a symlink leaving the root). */
  refused?: string;
}

export interface CatalogOptions {
  /** Empty: no local files, only remotes. */
  root: string;
  /** Archives on other HTTP servers, listed next to the local ones; a local file with the same id wins. */
  remote?: RemoteCatalog;
  rescanSeconds?: number;
  watch?: boolean;
  verify?: boolean;
  /** Archive descriptors held open (cached between requests, or busy). */
  maxOpenFiles?: number;
  /** An archive handle idle this long is closed (default 30 s). */
  handleIdleMs?: number;
  indexCacheEntries?: number;
  metrics?: Metrics;
  /** Structured events (scan results, watcher trouble) for the server log. */
  log?: (event: Record<string, unknown>) => void;
}

/** An archive opened for one request: the handle and the record that describes exactly its bytes. */
export interface OpenArchive {
  record: IndexRecord;
  /** Local archives only; a remote one streams from its origin. */
  fh?: FileHandle;
  /** The descriptor behind `fh`, valid until release(). */
  fd?: number;
  /** [offset, offset+length) of the file, with backpressure. */
  stream(offset: number, length: number): Readable;
  release(): Promise<void>;
}

export class Catalog {
  readonly root: string;
  private rootReal = '';
  private known = new Map<string, Known>();
  private readonly records: LRUCache<string, IndexRecord>;
  /** sha384 -> ids of images holding an image with that hash. */
  private blobs = new Map<string, Set<string>>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private scanAgain = false;
  /** Archives handed out and not yet released. */
  private openFiles = 0;
  private readonly handles: HandleCache;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  private verifying: Promise<void> | undefined;
  private verifyAgain = false;
  private readonly verified = new Map<string, IndexRecord['archive']>();
  lastScan: Date | undefined;

  constructor(private readonly opts: CatalogOptions) {
    this.root = opts.root;
    this.records = new LRUCache<string, IndexRecord>({
      max: Math.max(16, opts.indexCacheEntries ?? 10_000),
      maxSize: 512 * 1024 * 1024,
      sizeCalculation: recordWeight,
    });
    this.handles = new HandleCache({ max: opts.maxOpenFiles ?? 512, idleMs: opts.handleIdleMs ?? 30_000 });
  }

  get size(): number {
    return this.known.size + this.remoteIds().length;
  }

  /** Remote ids not shadowed by a local file. */
  private remoteIds(): string[] {
    return (this.opts.remote?.ids() ?? []).filter((id) => !this.known.has(id));
  }

  /** The origin URL when `id` is a remote image, for --redirect. */
  originOf(id: string): string | undefined {
    return this.known.has(id) ? undefined : this.opts.remote?.originOf(id);
  }

  /** Archives handed out to transfers and not yet released. */
  get openHandles(): number {
    return this.openFiles;
  }

  /** Archive descriptors open, idle in the handle cache or busy. */
  get openDescriptors(): number {
    return this.handles.open;
  }

  async start(): Promise<void> {
    if (this.root !== '') {
      this.rootReal = await realpath(this.root).catch((err: NodeJS.ErrnoException) => {
        throw new CosiError('COSI_ERR_IO', `cannot read catalog root ${this.root}: ${err.code ?? err.message}`, { cause: err });
      });
    }
    await this.opts.remote?.start();
    await this.rescan();
    if (this.opts.watch !== false && this.root !== '') this.startWatch();
    const every = this.opts.rescanSeconds ?? 30;
    if (every > 0) {
      this.timer = setInterval(() => void this.rescan().catch(() => {}), every * 1000);
      this.timer.unref();
    }
    const idle = this.opts.handleIdleMs ?? 30_000;
    this.sweeper = setInterval(() => this.handles.sweep(), Math.max(100, Math.min(idle, 10_000)));
    this.sweeper.unref();
  }

  /** Stops watching; cached handles close now, busy ones when their transfer releases them. */
  close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.debounce) clearTimeout(this.debounce);
    return this.handles.closeAll();
  }

  private startWatch(): void {
    const onEvent = (): void => {
      // Bursts (a copy, then a rename) settle into one rescan.
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.rescan().catch(() => {}), 50);
      this.debounce.unref();
    };
    try {
      this.watcher = watch(this.rootReal, { recursive: true, persistent: false }, onEvent);
    } catch {
      // Recursive watching is missing on some platforms: the top level plus the periodic rescan still work.
      try {
        this.watcher = watch(this.rootReal, { persistent: false }, onEvent);
      } catch (err) {
        this.opts.log?.({ event: 'watch-unavailable', message: (err as Error).message });
        return;
      }
    }
    this.watcher.on('error', (err) => {
      this.opts.log?.({ event: 'watch-error', message: err.message });
      this.watcher?.close();
      this.watcher = undefined;
    });
  }

  /** One scan at a time; a request for another while one runs queues exactly one more. */
  rescan(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.scanning) {
      this.scanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.scanAgain = false;
          await this.scanOnce();
        } while (this.scanAgain && !this.closed);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    const found = new Map<string, Known>();
    if (this.root !== '') for (const k of await this.walk(this.rootReal)) found.set(k.id, k);
    await this.refreshRemotes();
    this.known = found;
    // A handle on a file the scan no longer sees as it was (removed, replaced) is closed now,
    // not at its next request: an open descriptor would keep a deleted file's blocks in use.
    const live = new Map<string, FileIdentity>();
    for (const k of found.values()) if (!k.refused) live.set(k.path, k.identity);
    this.handles.retain((path, identity) => {
      const now = live.get(path);
      return now !== undefined && sameIdentity(now, identity);
    });
    // Index new and changed files now, so the listing and the blob map are complete. A few at a
    // time: each index is a handful of small reads, and the thread pool overlaps them.
    const all = [...found.values()];
    const recs = new Array<IndexRecord | undefined>(all.length);
    await eachLimited(all, SCAN_PARALLEL, async (k, i) => {
      recs[i] = await this.recordFor(k).catch(() => undefined);
    });
    const blobs = new Map<string, Set<string>>();
    for (const [i, k] of all.entries()) {
      const rec = recs[i];
      for (const p of rec?.archive?.partitions ?? []) {
        const sha = p.info.image.sha384?.toLowerCase();
        if (!sha) continue;
        let ids = blobs.get(sha);
        if (!ids) blobs.set(sha, (ids = new Set()));
        ids.add(k.id);
      }
    }
    this.blobs = blobs;
    // Verification results of files that no longer exist would only pile up.
    const liveKeys = new Set([...found.values()].map((k) => identityKey(k.identity)));
    for (const key of this.verified.keys()) if (!liveKeys.has(key)) this.verified.delete(key);
    this.lastScan = new Date();
    if (this.opts.verify) this.startVerify();
  }

  /** Archives under `dir`, in directory order (stat calls run a few at a time). */
  private async walk(dir: string): Promise<Known[]> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return []; // removed while scanning, or unreadable: the next scan sees it again
    }
    const out = new Array<Known[]>(entries.length);
    await eachLimited(entries, SCAN_PARALLEL, async (d, i) => {
      out[i] = [];
      // Dot files are how atomic writers stage (cosi-pack's .x.partial): never list them.
      if (d.name.startsWith('.')) return;
      const full = join(dir, d.name);
      if (d.isDirectory()) {
        out[i] = await this.walk(full);
        return;
      }
      if (!d.name.endsWith(COSI_EXT) || !(d.isFile() || d.isSymbolicLink())) return;
      const relPath = relative(this.rootReal, full).split(sep).join('/');
      const id = relPath.slice(0, -COSI_EXT.length);
      if (id === '' || id.split('/').some((s) => s === '' || s === '.' || s === '..')) return;
      try {
        if (d.isSymbolicLink()) {
          const target = await realpath(full);
          if (!this.inside(target)) {
            const st = await lstat(full);
            out[i] = [{ id, relPath, path: full, identity: identityOf(st), refused: 'symlink points outside the catalog root' }];
            return;
          }
          const st = await stat(target);
          if (!st.isFile()) return;
          out[i] = [{ id, relPath, path: target, identity: identityOf(st) }];
        } else {
          out[i] = [{ id, relPath, path: full, identity: identityOf(await stat(full)) }];
        }
      } catch {
        return; // vanished between readdir and stat
      }
    });
    return out.flat();
  }

  private inside(real: string): boolean {
    return real === this.rootReal || real.startsWith(this.rootReal + sep);
  }

  /** The record for what the scan saw; opens the file only when the identity is new. */
  private async recordFor(k: Known): Promise<IndexRecord> {
    if (k.refused) return this.refusedRecord(k);
    const cached = this.records.get(identityKey(k.identity));
    if (cached && cached.id === k.id) return cached;
    // Indexing alone does not keep the file open: a scan of thousands must not hoard descriptors.
    const a = await this.openKnown(k, false);
    const rec = a.record;
    await a.release();
    return rec;
  }

  private refusedRecord(k: Known): IndexRecord {
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

  /**
   * Remote origins are asked (one HEAD each) on every rescan, but a burst of
   * local file events must not turn into a burst of requests to them.
   */
  private lastRemoteRefresh = 0;
  private async refreshRemotes(): Promise<void> {
    const remote = this.opts.remote;
    if (!remote || this.lastScan === undefined) return; // the first scan follows remote.start()
    if (Date.now() - this.lastRemoteRefresh < 2000 && !this.forceRemote) return;
    this.forceRemote = false;
    this.lastRemoteRefresh = Date.now();
    await remote.refresh();
  }
  private forceRemote = false;

  /** A full rescan that also asks every remote origin, whatever the throttle says. */
  rescanAll(): Promise<void> {
    this.forceRemote = true;
    return this.rescan();
  }

  /** Every image as last scanned, for listings. */
  async list(): Promise<IndexRecord[]> {
    const out: IndexRecord[] = [];
    for (const k of this.known.values()) {
      const r = await this.recordFor(k).catch(() => undefined);
      if (r) out.push(r);
    }
    const remote = this.opts.remote;
    if (remote) for (const r of remote.records()) if (!this.known.has(r.id)) out.push(r);
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Validity of every indexed image, without indexing anything (for gauges). */
  validity(): boolean[] {
    const out: boolean[] = [];
    for (const k of this.known.values()) {
      if (k.refused) out.push(false);
      else {
        const r = this.records.peek(identityKey(k.identity));
        if (r) out.push(r.valid);
      }
    }
    for (const r of this.opts.remote?.records() ?? []) if (!this.known.has(r.id)) out.push(r.valid);
    return out;
  }

  /** A local file (not a remote) has this id. */
  hasLocal(id: string): boolean {
    return this.known.has(id);
  }

  has(id: string): boolean {
    return this.known.has(id) || (this.opts.remote?.has(id) ?? false);
  }

  /**
   * Open an image for serving. The record returned always describes the
   * bytes behind the handle: a file changed since it was indexed is indexed
   * again first, through the same handle.
   */
  async open(id: string): Promise<OpenArchive | undefined> {
    const k = this.known.get(id);
    if (!k) return this.opts.remote?.open(id);
    if (k.refused) throw new HttpError(403, 'FORBIDDEN', `${id}: ${k.refused}`);
    return this.openKnown(k);
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
   * anything would need real work (first open, a changed file, reindexing, remote): then open().
   */
  openCached(id: string): { record: IndexRecord; fd: number; release(): void } | undefined {
    const k = this.known.get(id);
    if (!k || k.refused) return undefined;
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
    const record = this.records.get(identityKey(identity));
    if (!record || record.id !== k.id) {
      this.handles.release(h);
      return undefined;
    }
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

  private async openKnown(k: Known, cache = true): Promise<OpenArchive> {
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
      let record = this.records.get(key);
      if (!record || record.id !== k.id) {
        this.opts.metrics?.inc('cosi_index_runs_total');
        record = await indexArchive(new HandleSource(k.relPath, h.fh, identity.size), { id: k.id, relPath: k.relPath, path: k.path, identity });
        if (!record.valid) this.opts.metrics?.inc('cosi_index_errors_total');
        const earlier = this.verified.get(key);
        if (earlier && record.archive) record.archive = earlier;
        this.records.set(key, record);
        this.opts.log?.({ event: 'indexed', id: k.id, valid: record.valid, reason: record.reason, ms: Math.round(record.indexMs) });
      }
      if (!sameIdentity(k.identity, identity)) {
        // The path now holds other bytes than the scan saw: remember them, and rescan soon for the rest.
        this.known.set(k.id, { ...k, identity });
      }
      const handle = h;
      let released = false;
      return {
        record,
        fh: handle.fh,
        fd: handle.fd,
        stream: (offset, length) => streamRange(handle.fh, offset, length),
        release: async () => {
          if (released) return;
          released = true;
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

  /** The slow path: resolve, check the root, open, fstat; the handle is cached for the next request. */
  private async openFresh(k: Known, cache: boolean): Promise<Handle> {
    if (!this.handles.reserve()) {
      throw new HttpError(503, 'BUSY', 'too many open files; retry shortly', { 'Retry-After': '1' });
    }
    let fh: FileHandle | undefined;
    try {
      // The scan's real path could have become a symlink since: check again.
      const real = await realpath(k.path);
      if (!this.inside(real)) throw new HttpError(404, 'NOT_FOUND', `no image ${k.id}`);
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

  /** Ids of images holding an image with this SHA-384 (lowercase hex). */
  blobHolders(sha384: string): string[] {
    // Local copies first: they cost no origin request.
    const remote = (this.opts.remote?.blobHolders(sha384) ?? []).filter((id) => !this.known.has(id));
    return [...(this.blobs.get(sha384) ?? []), ...remote];
  }

  /** Resolves once the background verification (if any) has gone through every image. */
  async verifyIdle(): Promise<void> {
    while (this.verifying) await this.verifying;
  }

  private startVerify(): void {
    if (this.verifying) {
      // Files found by a scan during this pass get their own pass afterwards.
      this.verifyAgain = true;
      return;
    }
    this.verifyAgain = false;
    this.verifying = (async () => {
      try {
        for (const k of [...this.known.values()]) {
          if (this.closed) return;
          if (k.refused || this.verified.has(identityKey(k.identity))) continue;
          const a = await this.open(k.id).catch(() => undefined);
          if (!a) continue;
          try {
            if (!a.fh) continue; // remote: --verify would download it whole
            const key = identityKey(identityOf(await a.fh.stat()));
            if (this.verified.has(key) || !a.record.archive) continue;
            const corrupt = await verifyRecord(a);
            if (corrupt > 0) this.opts.metrics?.inc('cosi_verify_corrupt_total', {}, corrupt);
            this.verified.set(key, a.record.archive);
            this.opts.log?.({ event: 'verified', id: k.id, corrupt });
          } finally {
            await a.release();
          }
        }
      } finally {
        this.verifying = undefined;
        if (this.verifyAgain && !this.closed) this.startVerify();
      }
    })();
  }
}
