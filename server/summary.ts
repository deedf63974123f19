/**
 * The JSON view of an index record, shared by the API and the HTML page:
 * what a client needs to choose an image and a partition without reading
 * metadata.json itself, plus the URLs to fetch them.
 */
import { primaryGptRegion, type CosiMetadata, type PartitionInfo } from '../shared/format/metadata.js';
import { selectPartition } from '../shared/format/select.js';
import { encodePath } from './catalog/ids.js';
import type { IndexRecord, PartitionRecord } from './catalog/indexer.js';

/** KEY=value lines of os-release, unquoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    let v = m[2]!;
    if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.endsWith(v[0]!)) v = v.slice(1, -1).replace(/\\(["'$`\\])/g, '$1');
    out[m[1]!] = v;
  }
  return out;
}

export function osSummary(meta: CosiMetadata): { prettyName?: string; osId?: string; versionId?: string } {
  const os = parseOsRelease(typeof meta.osRelease === 'string' ? meta.osRelease : '');
  const prettyName = os['PRETTY_NAME'] ?? ([os['NAME'], os['VERSION']].filter(Boolean).join(' ') || undefined);
  return { prettyName, osId: os['ID'], versionId: os['VERSION_ID'] };
}

/** Chosen once per partition of an indexed archive: listings summarize every image on every request. */
const selectors = new WeakMap<PartitionInfo, string>();

/**
 * The shortest selector that picks exactly this partition: its type name,
 * else its mount point, number or path. Used for the copyable commands.
 */
export function preferredSelector(all: PartitionInfo[], p: PartitionInfo): string {
  let s = selectors.get(p);
  if (s === undefined) selectors.set(p, (s = firstUnique(all, p)));
  return s;
}

function firstUnique(all: PartitionInfo[], p: PartitionInfo): string {
  const candidates = [p.dpsName, p.mountPoint, p.number === undefined ? undefined : String(p.number), p.path];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (selectPartition(all, c).path === p.path) return c;
    } catch {
      // ambiguous or no match: try the next spelling
    }
  }
  return p.path;
}

/** What the metadata says of a partition, shown as it is. */
type PartitionFields = Pick<PartitionInfo, 'number' | 'path' | 'role' | 'mountPoint' | 'fsType' | 'fsUuid' | 'partType' | 'dpsName'>;

export interface PartitionSummary extends PartitionFields {
  selector: string;
  compressedSize: number;
  uncompressedSize: number;
  sha384?: string;
  shrunk?: boolean;
  partitionSize?: number;
  headerOffset?: number;
  dataOffset?: number;
  storedSize?: number;
  verified?: string;
  /** zstd frames of a framed image (one with a seek table); absent for one-frame images. */
  frames?: number;
  url: string;
  blobUrl?: string;
}

export interface ImageSummary {
  id: string;
  url: string;
  rawUrl: string;
  metadataUrl: string;
  size: number;
  mtime: string;
  etag: string;
  valid: boolean;
  reason?: string;
  errors: Array<{ field: string; rule: string; message: string }>;
  warnings: Array<{ field: string; rule: string; message: string }>;
  indexedAt: string;
  metadataSha384?: string;
  version?: string;
  cosiId?: string;
  osArch?: string;
  prettyName?: string;
  osId?: string;
  versionId?: string;
  bootloader?: string;
  packages?: number;
  disk?: { size: number; lbaSize: number };
  compressedTotal?: number;
  uncompressedTotal?: number;
  primaryGpt?: { path: string; url: string; dataOffset?: number; storedSize?: number };
  partitions: PartitionSummary[];
  /** Only in the single-image view: every tar member's offsets. */
  entries?: Array<{ name: string; type: string; headerOffset: number; dataOffset: number; size: number }>;
  corrupt?: number;
  /** Listed from a remote catalog entry (bytes come from another server). */
  remote?: boolean;
  /** Another id of the same file (a symlink or hard link inside the root): the one listed as the file itself. */
  aliasOf?: string;
}

function partitionSummary(r: IndexRecord, all: PartitionInfo[], p: PartitionRecord): PartitionSummary {
  const i = p.info;
  const selector = preferredSelector(all, i);
  const sha = i.image.sha384?.toLowerCase();
  return {
    selector,
    number: i.number,
    path: i.path,
    role: i.role,
    mountPoint: i.mountPoint,
    fsType: i.fsType,
    fsUuid: i.fsUuid,
    partType: i.partType,
    dpsName: i.dpsName,
    compressedSize: i.image.compressedSize,
    uncompressedSize: i.image.uncompressedSize,
    sha384: sha,
    shrunk: i.shrunk,
    partitionSize: i.gptPartition?.size,
    headerOffset: p.entry?.headerOffset,
    dataOffset: p.entry?.dataOffset,
    storedSize: p.entry?.size,
    verified: p.verified,
    frames: p.seek?.filter((f) => f.decompressedSize > 0).length,
    url: `/v1/images/${encodePath(r.id)}/partitions/${encodeURIComponent(selector)}`,
    blobUrl: sha && /^[0-9a-f]{96}$/.test(sha) ? `/v1/blobs/sha384/${sha}` : undefined,
  };
}

export function summarize(r: IndexRecord, opts: { entries?: boolean } = {}): ImageSummary {
  const idPath = encodePath(r.id);
  const out: ImageSummary = {
    id: r.id,
    url: `/v1/images/${idPath}`,
    rawUrl: `/cosi/${encodePath(r.relPath)}`,
    metadataUrl: `/v1/images/${idPath}/metadata.json`,
    size: r.identity.size,
    mtime: new Date(r.identity.mtimeMs).toISOString(),
    etag: r.etag,
    valid: r.valid,
    reason: r.reason,
    errors: r.errors,
    warnings: r.warnings,
    indexedAt: r.indexedAt.toISOString(),
    partitions: [],
  };
  if (r.origin) out.remote = true;
  if (r.aliasOf !== undefined) out.aliasOf = r.aliasOf;
  const a = r.archive;
  // The detail view always has the list, empty when the archive could not be read.
  if (opts.entries) out.entries = [];
  if (!a) return out;
  const m = a.metadata;
  Object.assign(out, osSummary(m));
  out.metadataSha384 = a.metadataSha384;
  out.version = m.version;
  out.cosiId = m.id;
  out.osArch = m.osArch;
  out.bootloader = m.bootloader?.type;
  out.packages = Array.isArray(m.osPackages) ? m.osPackages.length : undefined;
  if (m.disk) out.disk = { size: m.disk.size, lbaSize: m.disk.lbaSize };
  const all = a.partitions.map((p) => p.info);
  out.partitions = a.partitions.map((p) => partitionSummary(r, all, p));
  out.compressedTotal = out.partitions.reduce((n, p) => n + (p.compressedSize || 0), 0);
  out.uncompressedTotal = out.partitions.reduce((n, p) => n + (p.uncompressedSize || 0), 0);
  const gpt = primaryGptRegion(m);
  if (gpt) {
    const e = a.entries.find((x) => x.name === gpt.image.path && x.type === 'file');
    out.primaryGpt = { path: gpt.image.path, url: `/v1/images/${idPath}/partitions/primary-gpt`, dataOffset: e?.dataOffset, storedSize: e?.size };
  }
  const corrupt = a.partitions.filter((p) => p.verified !== undefined && p.verified !== 'ok' && !p.verified.startsWith('no sha384')).length;
  if (corrupt > 0) out.corrupt = corrupt;
  if (opts.entries) out.entries = a.entries.map((e) => ({ ...e }));
  return out;
}
