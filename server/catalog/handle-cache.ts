/**
 * Open archive handles kept between requests, one per path, so a request
 * costs one lstat (is this still the file we opened?) instead of
 * realpath + open + fstat + close. A handle is only ever handed out for the
 * identity (dev, ino, size, mtime) it was opened with: a path whose lstat no
 * longer matches misses, and the caller opens the file afresh, which retires
 * the old handle. Retired and evicted handles close once their last transfer
 * lets go, so a replaced file is never read through a stale handle and its
 * disk space is freed.
 *
 * `max` caps the descriptors held (cached or busy): idle ones are closed to
 * make room, and only when every one is busy does a new open get refused.
 */
import type { FileHandle } from 'node:fs/promises';
import { sameIdentity, type FileIdentity } from './indexer.js';

/** A shared open handle; valid until released. */
export interface Handle {
  readonly fh: FileHandle;
  /** The descriptor behind `fh`, for the callback fs API on hot paths. */
  readonly fd: number;
  readonly identity: FileIdentity;
}

interface Entry extends Handle {
  key: string;
  refs: number;
  /** Out of the cache: closes when refs reach 0. */
  retired: boolean;
  lastUsed: number;
}

export interface HandleCacheOptions {
  /** Descriptors held at most, cached and busy together. */
  max: number;
  /** An idle handle unused this long is closed by sweep(). */
  idleMs?: number;
}

export class HandleCache {
  /** Map order is recency: a hit moves the entry to the end. */
  private readonly byKey = new Map<string, Entry>();
  /** Descriptors open (cached, retired-but-busy) plus opens reserved and in progress. */
  private held = 0;
  private readonly closing = new Set<Promise<void>>();

  constructor(private readonly opts: HandleCacheOptions) {}

  /** Descriptors open or being opened. */
  get open(): number {
    return this.held;
  }

  /** Handles in the cache (idle or busy). */
  get cached(): number {
    return this.byKey.size;
  }

  /** The cached handle for `key`, when it was opened on exactly `identity`; takes a reference. */
  acquire(key: string, identity: FileIdentity): Handle | undefined {
    const e = this.byKey.get(key);
    if (!e) return undefined;
    if (!sameIdentity(e.identity, identity)) {
      // The path holds other bytes now: this handle must never serve it again.
      this.retire(e);
      return undefined;
    }
    e.refs++;
    e.lastUsed = Date.now();
    this.byKey.delete(key);
    this.byKey.set(key, e);
    return e;
  }

  /**
   * Room for one more descriptor, closing idle handles (oldest first) if
   * needed. False when every descriptor is busy. A true answer must be
   * followed by adopt() or unreserve().
   */
  reserve(): boolean {
    if (this.held >= this.opts.max) {
      for (const e of this.byKey.values()) {
        if (this.held < this.opts.max) break;
        if (e.refs === 0) this.retire(e);
      }
    }
    if (this.held >= this.opts.max) return false;
    this.held++;
    return true;
  }

  unreserve(): void {
    this.held--;
  }

  /**
   * Take over a freshly opened handle (its reservation included), with one
   * reference. Cached under `key` unless `cache` is false; any older handle
   * under the key is retired.
   */
  adopt(key: string, fh: FileHandle, identity: FileIdentity, cache = true): Handle {
    const e: Entry = { key, fh, fd: fh.fd, identity, refs: 1, retired: !cache, lastUsed: Date.now() };
    if (cache) {
      const old = this.byKey.get(key);
      if (old) this.retire(old);
      this.byKey.set(key, e);
    }
    return e;
  }

  release(h: Handle): void {
    const e = h as Entry;
    e.refs--;
    e.lastUsed = Date.now();
    if (e.refs === 0 && e.retired) this.close(e);
  }

  /** The file at `key` was removed or replaced: drop its handle. */
  forget(key: string): void {
    const e = this.byKey.get(key);
    if (e) this.retire(e);
  }

  /** Keep only handles whose key is still listed with the same identity (after a rescan). */
  retain(live: (key: string, identity: FileIdentity) => boolean): void {
    for (const e of [...this.byKey.values()]) if (!live(e.key, e.identity)) this.retire(e);
  }

  /** Close handles idle for longer than idleMs. */
  sweep(now = Date.now()): void {
    const idle = this.opts.idleMs ?? 30_000;
    for (const e of [...this.byKey.values()]) if (e.refs === 0 && now - e.lastUsed >= idle) this.retire(e);
  }

  /** Retire everything; busy handles close when released. Resolves when the idle ones are closed. */
  async closeAll(): Promise<void> {
    for (const e of [...this.byKey.values()]) this.retire(e);
    await Promise.all([...this.closing]);
  }

  private retire(e: Entry): void {
    if (this.byKey.get(e.key) === e) this.byKey.delete(e.key);
    if (e.retired) return;
    e.retired = true;
    if (e.refs === 0) this.close(e);
  }

  private close(e: Entry): void {
    this.held--;
    const p = e.fh.close().catch(() => {});
    this.closing.add(p);
    void p.finally(() => this.closing.delete(p));
  }
}
