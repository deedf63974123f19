/**
 * Folder server/catalog/: which archives exist and what is in them: scan and watch, index records, open handles,
 * remote entries, the sample catalog, background verify. Imports shared/ only; the HTTP layer imports it.
 *
 * The set of archives under the root: found by a recursive scan, kept fresh
 * by fs.watch plus a periodic rescan (watchers miss events on some
 * filesystems), with index records cached in an LRU keyed by file identity.
 *
 * A request never names a filesystem path: it names an id, the id maps to a
 * path found by the scan, and the opened handle's fstat picks the index
 * record. So a file replaced by an atomic rename is reindexed before a single
 * byte of it is served, and old offsets never meet new bytes.
 *
 * Catalog is what the server uses; the work is done by the scanner
 * (scanner.ts), the opener (opener.ts), the blob index (blob-index.ts) and
 * the background verification (verify.ts), with remote archives from
 * remote.ts listed next to the local ones.
 */
import { HttpError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { BlobIndex } from './blob-index.js';
import { identityKey, type IndexRecord } from './indexer.js';
import type { OpenArchive } from './open-archive.js';
import { ArchiveOpener, type CachedArchive, type OpenerOptions } from './opener.js';
import type { RemoteCatalog } from './remote.js';
import { eachLimited, SCAN_PARALLEL, Scanner, type Known } from './scanner.js';
import { Verifier } from './verify.js';

export interface CatalogOptions extends Pick<OpenerOptions, 'maxOpenFiles' | 'handleIdleMs' | 'indexCacheEntries' | 'maxMetadataBytes'> {
  /** Empty: no local files, only remotes. */
  root: string;
  /** Archives on other HTTP servers, listed next to the local ones; a local file with the same id wins. */
  remote?: RemoteCatalog;
  rescanSeconds?: number;
  watch?: boolean;
  verify?: boolean;
  metrics?: Metrics;
  /** Structured events (scan results, watcher trouble) for the server log. */
  log?: (event: Record<string, unknown>) => void;
}

export class Catalog {
  readonly root: string;
  private known = new Map<string, Known>();
  private readonly scanner: Scanner;
  private readonly opener: ArchiveOpener;
  private readonly blobs = new BlobIndex();
  private readonly verifier: Verifier;
  lastScan: Date | undefined;

  constructor(private readonly opts: CatalogOptions) {
    this.root = opts.root;
    const { metrics, log } = opts;
    this.scanner = new Scanner({ root: opts.root, rescanSeconds: opts.rescanSeconds, watch: opts.watch, log, scan: () => this.scanOnce() });
    this.verifier = new Verifier({ archives: () => this.known.values(), open: (id) => this.open(id), metrics, log });
    this.opener = new ArchiveOpener({
      maxOpenFiles: opts.maxOpenFiles,
      handleIdleMs: opts.handleIdleMs,
      indexCacheEntries: opts.indexCacheEntries,
      maxMetadataBytes: opts.maxMetadataBytes,
      metrics,
      log,
      inside: (real) => this.scanner.inside(real),
      verifiedArchive: (key) => this.verifier.resultFor(key),
      changed: (k, identity) => this.known.set(k.id, { ...k, identity }),
    });
  }

  get size(): number {
    return this.known.size + this.remoteIds().length;
  }

  /** Remote ids not shadowed by a local file. */
  private remoteIds(): string[] {
    return (this.opts.remote?.ids() ?? []).filter((id) => !this.known.has(id));
  }

  /** The origin URL when `id` is a remote image, for --redirect. */
  async originOf(id: string): Promise<string | undefined> {
    return this.known.has(id) ? undefined : this.opts.remote?.originOf(id);
  }

  /** Archives handed out to transfers and not yet released. */
  get openHandles(): number {
    return this.opener.openHandles;
  }

  /** Archive descriptors open, idle in the handle cache or busy. */
  get openDescriptors(): number {
    return this.opener.openDescriptors;
  }

  async start(): Promise<void> {
    await this.scanner.resolveRoot();
    await this.opts.remote?.start();
    await this.rescan();
    this.scanner.startTriggers();
    this.opener.startSweeping();
  }

  /** Stops watching; cached handles close now, busy ones when their transfer releases them. */
  close(): Promise<void> {
    this.scanner.close();
    this.verifier.close();
    return this.opener.close();
  }

  /** One scan at a time; a request for another while one runs queues exactly one more. */
  rescan(): Promise<void> {
    return this.scanner.rescan();
  }

  private async scanOnce(): Promise<void> {
    const found = await this.scanner.find();
    await this.refreshRemotes();
    this.known = found;
    this.opener.retain(found.values());
    // Index new and changed files now, so the listing and the blob map are complete. A few at a
    // time: each index is a handful of small reads, and the thread pool overlaps them.
    const all = [...found.values()];
    const recs = new Array<IndexRecord | undefined>(all.length);
    await eachLimited(all, SCAN_PARALLEL, async (k, i) => {
      recs[i] = await this.opener.recordFor(k).catch(() => undefined);
    });
    this.blobs.rebuild(all.map((k, i) => [k.id, recs[i]] as const));
    this.verifier.keepOnly(new Set(all.map((k) => identityKey(k.identity))));
    this.lastScan = new Date();
    if (this.opts.verify) this.verifier.start();
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
      const r = await this.opener.recordFor(k).catch(() => undefined);
      if (r) out.push(r);
    }
    const remote = this.opts.remote;
    if (remote) for (const r of remote.records()) if (!this.known.has(r.id)) out.push(r);
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** One image's record (indexed on first use), without holding its file open: for views, not bytes. */
  async record(id: string): Promise<IndexRecord | undefined> {
    const k = this.known.get(id);
    if (!k) return this.opts.remote?.records().find((r) => r.id === id);
    if (k.refused) throw new HttpError(403, 'FORBIDDEN', `${id}: ${k.refused}`);
    return this.opener.recordFor(k);
  }

  /** Validity of every indexed image, without indexing anything (for gauges). */
  validity(): boolean[] {
    const out: boolean[] = [];
    for (const k of this.known.values()) {
      if (k.refused) out.push(false);
      else {
        const r = this.opener.peekRecord(k.identity);
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
    return this.opener.open(k);
  }

  /**
   * The hit path of open() without a promise: a local archive whose handle and record are
   * cached and still current. Undefined whenever anything would need real work (first open,
   * a changed file, reindexing, remote): then open().
   */
  openCached(id: string): CachedArchive | undefined {
    const k = this.known.get(id);
    if (!k || k.refused) return undefined;
    return this.opener.openCached(k);
  }

  /** Ids of images holding an image with this SHA-384 (lowercase hex). */
  blobHolders(sha384: string): string[] {
    // Local copies first: they cost no origin request.
    const remote = (this.opts.remote?.blobHolders(sha384) ?? []).filter((id) => !this.known.has(id));
    return [...this.blobs.holders(sha384), ...remote];
  }

  /** Resolves once the background verification (if any) has gone through every image. */
  verifyIdle(): Promise<void> {
    return this.verifier.idle();
  }
}
