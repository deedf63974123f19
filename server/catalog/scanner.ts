/**
 * Finding the archives under the root: a recursive scan that resolves
 * symlinks and holds them to the root, run again on fs.watch events and on a
 * timer (watchers miss events on some filesystems), one scan at a time.
 */
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { CosiError } from '../../shared/errors.js';
import { identityOf, type FileIdentity } from './indexer.js';
import { systemError } from '../../shared/errno.js';

export const COSI_EXT = '.cosi';

/** Files stat'ed or indexed at once during a scan. */
export const SCAN_PARALLEL = 8;

/** fn over every item, at most `limit` running at once. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
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
export interface Known {
  id: string;
  relPath: string;
  /** Real path (symlinks resolved, inside the root). */
  path: string;
  identity: FileIdentity;
  /** Set when the file must never be opened (a symlink leaving the root). */
  refused?: string;
  /** Found through a symlink (inside the root). */
  viaLink?: boolean;
  /** Another id names the same file (same device and inode): the one listed as the file itself. */
  aliasOf?: string;
}

export interface ScannerOptions {
  /** Empty: no local files. */
  root: string;
  rescanSeconds?: number;
  watch?: boolean;
  log?: (event: Record<string, unknown>) => void;
  /** One pass over the catalog, run by rescan(). */
  scan: () => Promise<void>;
}

export class Scanner {
  /** The root with symlinks resolved ('' without a root). */
  rootReal = '';
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private scanAgain = false;
  private closed = false;

  constructor(private readonly opts: ScannerOptions) {}

  /** A root that cannot be resolved is a startup error. */
  async resolveRoot(): Promise<void> {
    const root = this.opts.root;
    if (root === '') return;
    this.rootReal = await realpath(root).catch((err: NodeJS.ErrnoException) => {
      throw systemError(`cannot read catalog root ${root}`, err, { code: 'COSI_ERR_IO' });
    });
    // A file as the root would scan to an empty catalog and serve nothing, silently.
    if (!(await stat(this.rootReal)).isDirectory()) {
      throw new CosiError('COSI_ERR_USAGE', `--root ${root} is a file, not a directory: give the directory that holds it (--root ${dirname(root) || '.'}), which serves every .cosi file in it`);
    }
  }

  /** From now on, rescan on file events (unless watching is off) and every rescanSeconds. */
  startTriggers(): void {
    if (this.opts.watch !== false && this.opts.root !== '') this.startWatch();
    const every = this.opts.rescanSeconds ?? 30;
    if (every > 0) {
      this.timer = setInterval(() => void this.rescan().catch(() => {}), every * 1000);
      this.timer.unref();
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
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
          await this.opts.scan();
        } while (this.scanAgain && !this.closed);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  /** Every archive under the root, by id (none without a root); names of one file marked as aliases. */
  async find(): Promise<Map<string, Known>> {
    const found = new Map<string, Known>();
    if (this.opts.root !== '') for (const k of markAliases(await this.walk(this.rootReal))) found.set(k.id, k);
    return found;
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
          out[i] = [{ id, relPath, path: target, identity: identityOf(st), viaLink: true }];
        } else {
          out[i] = [{ id, relPath, path: full, identity: identityOf(await stat(full)) }];
        }
      } catch {
        return; // vanished between readdir and stat
      }
    });
    return out.flat();
  }

  /** `real` (a resolved path) is the root or below it. */
  inside(real: string): boolean {
    return real === this.rootReal || real.startsWith(this.rootReal + sep);
  }
}

/**
 * Ids that name one file (a symlink inside the root beside its target, hard links) share one
 * index record; all but one are listed as aliases of it. The one is the name that is the file
 * itself rather than a symlink to it, else the first id in sort order, so it stays the same
 * from scan to scan.
 */
export function markAliases(all: Known[]): Known[] {
  const byFile = new Map<string, Known[]>();
  for (const k of all) {
    if (k.refused) continue;
    const key = `${k.identity.dev}:${k.identity.ino}`;
    const names = byFile.get(key);
    if (names) names.push(k);
    else byFile.set(key, [k]);
  }
  for (const names of byFile.values()) {
    if (names.length < 2) continue;
    const rank = (k: Known): number => (k.viaLink ? 1 : 0);
    const first = names.reduce((a, b) => (rank(b) < rank(a) || (rank(b) === rank(a) && b.id < a.id) ? b : a));
    for (const k of names) if (k !== first) k.aliasOf = first.id;
  }
  return all;
}
