/**
 * Where each image lives in the archive. The metadata predicts it (images
 * follow metadata.json in gptRegions order, each behind one 512-byte header);
 * a prediction is trusted only once the header at that offset names the
 * image with its size. When a check fails, or the metadata cannot predict
 * (COSI 1.0/1.1), the archive's headers are walked once, reading ahead in
 * large blocks, and the walk answers every later question.
 */
import { predictLayout, type CosiArchive } from '../shared/format/archive.js';
import { CosiError } from '../shared/errors.js';
import { allImageFiles } from '../shared/format/metadata.js';
import { BLOCK, decodeHeader, padded, readTarIndex, type TarEntry } from '../shared/format/tar.js';
import type { CachedSource } from './cached-source.js';

export interface Located {
  path: string;
  /** First byte to fetch: the header when `checked` is false, else the data. */
  headerOffset: number;
  dataOffset: number;
  size: number;
  /** True when the header was already checked (from cached bytes or a walk). */
  checked: boolean;
}

/** Window for the fallback walk: large, so many small members cost one request. */
export const WALK_WINDOW = 256 * 1024;

/** Does this 512-byte header describe exactly this image? */
export function headerMatches(block: Buffer, path: string, size: number, at: number): boolean {
  let h;
  try {
    h = decodeHeader(block, at);
  } catch {
    return false;
  }
  return h !== null && (h.typeflag === '0' || h.typeflag === '7') && h.name === path && h.size === size;
}

export class Locator {
  private readonly predicted = new Map<string, Located>();
  private walked: Map<string, TarEntry> | undefined;
  private walking: Promise<Map<string, TarEntry>> | undefined;
  /** Set once any prediction failed: the rest are not trusted either. */
  private predictionBroken = false;
  /** Requests the walk made (for the summary). */
  readonly stats = { reads: 0 };

  constructor(
    private readonly archive: CosiArchive,
    private readonly src: CachedSource,
  ) {
    const layout = predictLayout(archive.metadata, archive.metadataEntry);
    if (!layout) {
      this.predictionBroken = true;
      return;
    }
    for (const p of layout) {
      if (!this.predicted.has(p.path)) {
        this.predicted.set(p.path, { path: p.path, headerOffset: p.headerOffset, dataOffset: p.dataOffset, size: p.size, checked: false });
      }
    }
  }

  /** Where `path` is; `checked: false` means the caller must check the header in-band. */
  async locate(path: string, size: number): Promise<Located> {
    if (!this.predictionBroken && !this.walked) {
      const p = this.predicted.get(path);
      if (p && p.size === size) {
        const block = this.src.peek(p.headerOffset, BLOCK);
        if (!block) return p;
        if (headerMatches(block, path, size, p.headerOffset)) return { ...p, checked: true };
        this.predictionBroken = true;
      } else {
        this.predictionBroken = true;
      }
    }
    return this.fromWalk(path, size);
  }

  /** A caller's in-band header check failed: stop trusting predictions and walk. */
  async mispredicted(path: string, size: number): Promise<Located> {
    this.predictionBroken = true;
    return this.fromWalk(path, size);
  }

  private async fromWalk(path: string, size: number): Promise<Located> {
    const index = await this.walk();
    const e = index.get(path);
    if (!e) {
      throw new CosiError('COSI_ERR_INVALID', `${this.src.name}: metadata lists ${path}, but the archive has no such file`);
    }
    if (e.size !== size) {
      throw new CosiError('COSI_ERR_INVALID', `${this.src.name}: ${path} is ${e.size} bytes in the archive, metadata says ${size}`);
    }
    return { path, headerOffset: e.dataOffset, dataOffset: e.dataOffset, size: e.size, checked: true };
  }

  /** One walk from the end of metadata.json, stopping once every image the metadata names is found. */
  walk(): Promise<Map<string, TarEntry>> {
    this.walking ??= (async () => {
      const wanted = new Set(allImageFiles(this.archive.metadata).map((i) => i.path));
      const found = new Map<string, TarEntry>();
      const m = this.archive.metadataEntry;
      const index = await readTarIndex(this.src, {
        head: this.src.head(),
        startOffset: m.dataOffset + padded(m.size),
        window: WALK_WINDOW,
        stats: this.stats,
        stopAfter: (e) => {
          if (e.type === 'file' && wanted.has(e.name) && !found.has(e.name)) found.set(e.name, e);
          return found.size === wanted.size;
        },
      });
      for (const e of index.entries) if (e.type === 'file' && !found.has(e.name)) found.set(e.name, e);
      this.walked = found;
      return found;
    })();
    return this.walking;
  }
}
