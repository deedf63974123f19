/**
 * One archive file in, one index record out. Reads only what checkArchive
 * reads (marker, metadata, tar headers, the small primary-GPT image), so a
 * 20 GiB archive indexes as fast as a 20 MiB one. A file that is not a valid
 * COSI still gets a record, carrying the reason, so the catalog can show it.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { checkArchive, type CheckOptions } from '../../shared/format/check.js';
import { oneLine } from '../../shared/errors.js';
import { listPartitions, type CosiMetadata, type PartitionInfo } from '../../shared/format/metadata.js';
import type { ByteSource } from '../../shared/transport/source.js';
import type { TarEntry } from '../../shared/format/tar.js';
import type { ValidationIssue } from '../../shared/format/validate.js';
import { FIRST_FRAME_BYTES, firstFrameIsPart, readSeekTable, type SeekFrame } from '../../shared/zstd/index.js';
import { CachedSource } from '../../shared/transport/cached-source.js';

/** What identifies the bytes behind a path: a rename or rewrite changes at least one. */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export function identityOf(st: Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs'>): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

export function identityKey(i: FileIdentity): string {
  return `${i.dev}:${i.ino}:${i.size}:${i.mtimeMs}`;
}

/** One partition as served: the metadata's view plus where its bytes sit in the tar. */
export interface PartitionRecord {
  info: PartitionInfo;
  /** Absent when the archive has no tar entry for the image (the record is then invalid). */
  entry?: Pick<TarEntry, 'headerOffset' | 'dataOffset' | 'size'>;
  /** Set by --verify: 'ok', or why the stored bytes do not match the metadata. */
  verified?: 'ok' | string;
  /** The seek table's frames, when the image is framed (ranges of ?decompress=1 decode only the frames they need). */
  seek?: SeekFrame[];
}

export interface ArchiveView {
  metadataBytes: Buffer;
  metadataSha384: string;
  metadata: CosiMetadata;
  entries: Array<Pick<TarEntry, 'name' | 'type' | 'headerOffset' | 'dataOffset' | 'size'>>;
  partitions: PartitionRecord[];
}

export interface IndexRecord {
  /** Relative path without `.cosi`, '/'-separated. */
  id: string;
  /** Relative path as found under the root. */
  relPath: string;
  /** Absolute path: only ever set from the directory scan, never from a request. */
  path: string;
  identity: FileIdentity;
  /** Strong ETag of the raw archive: changes whenever the file does. */
  etag: string;
  lastModified: Date;
  valid: boolean;
  /** First problem, one line; set when invalid. */
  reason?: string;
  errors: ValidationIssue[];
  warnings: ValidationIssue[];
  /** Absent when the file could not be read as COSI at all. */
  archive?: ArchiveView;
  indexedAt: Date;
  indexMs: number;
  /** The http(s) URL of a remote archive; absent for local files. */
  origin?: string;
  /** Set when this id names the same file as another id (a symlink or hard link inside the root): that id. */
  aliasOf?: string;
}

/** Strong validator for the raw bytes: identity plus what the metadata hashes to. */
export function rawEtag(identity: FileIdentity, metadataSha384 = ''): string {
  const h = createHash('sha256').update(`${identityKey(identity)}:${metadataSha384}`).digest('base64url');
  return `"${h.slice(0, 27)}"`;
}

export async function indexArchive(src: ByteSource, file: { id: string; relPath: string; path: string; identity: FileIdentity }, opts: Pick<CheckOptions, 'maxMetadataBytes'> = {}): Promise<IndexRecord> {
  const t0 = performance.now();
  const base = {
    ...file,
    lastModified: new Date(Math.floor(file.identity.mtimeMs / 1000) * 1000),
    indexedAt: new Date(),
  };
  try {
    // The walk's header reads bring the start of each entry's data: kept, they tell which images may be framed.
    const cached = new CachedSource(src, { readAhead: 0, maxKept: 8 << 20 });
    const { archive, gpt, result } = await checkArchive(cached, opts);
    const byName = new Map<string, TarEntry>();
    for (const e of archive.index.entries) if (e.type === 'file' && !byName.has(e.name)) byName.set(e.name, e);
    const partitions = listPartitions(archive.metadata, gpt).map((info): PartitionRecord => {
      const e = byName.get(info.path);
      return e ? { info, entry: { headerOffset: e.headerOffset, dataOffset: e.dataOffset, size: e.size } } : { info };
    });
    // An image whose first frame declares less than the whole image gets one small read of its end, the
    // seek table; a one-frame image costs nothing more. A table that lies is left to the decoders to refuse.
    for (const p of partitions) {
      if (!p.entry || p.entry.size !== p.info.image.compressedSize) continue;
      const n = Math.min(p.entry.size, FIRST_FRAME_BYTES);
      const first = cached.peek(p.entry.dataOffset, n) ?? (await src.read(p.entry.dataOffset, n).catch(() => undefined));
      if (firstFrameIsPart(first, p.info.image.uncompressedSize)) p.seek = (await readSeekTable(src, p.entry, p.info.image).catch(() => undefined))?.frames;
    }
    const view: ArchiveView = {
      metadataBytes: archive.metadataBytes,
      metadataSha384: archive.metadataSha384,
      metadata: archive.metadata,
      entries: archive.index.entries.map(({ name, type, headerOffset, dataOffset, size }) => ({ name, type, headerOffset, dataOffset, size })),
      partitions,
    };
    return {
      ...base,
      etag: rawEtag(file.identity, archive.metadataSha384),
      valid: result.valid,
      reason: result.valid ? undefined : result.errors[0]?.message,
      errors: result.errors,
      warnings: result.warnings,
      archive: view,
      indexMs: performance.now() - t0,
    };
  } catch (err) {
    // Anything unreadable is listed, never fatal: one bad upload must not take the catalog down.
    const reason = oneLine(err);
    return {
      ...base,
      etag: rawEtag(file.identity),
      valid: false,
      reason,
      errors: [{ field: 'file', rule: (err as { code?: string }).code ?? 'unreadable', message: reason }],
      warnings: [],
      indexMs: performance.now() - t0,
    };
  }
}

/** Rough heap cost, for the LRU's size accounting. */
export function recordWeight(r: IndexRecord): number {
  const frames = r.archive ? r.archive.partitions.reduce((n, p) => n + (p.seek?.length ?? 0), 0) : 0;
  return 1024 + (r.archive ? r.archive.metadataBytes.length * 3 + r.archive.entries.length * 200 : 0) + frames * 80;
}
