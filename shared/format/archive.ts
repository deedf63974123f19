/**
 * Folder shared/format/: the COSI container: tar walker, metadata model and validation, this opener,
 * whole-archive checks, selectors. Imports disk/, zstd/, transport/, errors.ts, units.ts; imported by pack/, client/, server/.
 *
 * Opening a COSI archive over any ByteSource: the marker check, the metadata
 * (usually within the first read), and the tar index (completeIndex). Only
 * headers and metadata are read, never image data, so cost follows the entry count.
 */
import { createHash } from 'node:crypto';
import { CosiError } from '../errors.js';
import { MAX_METADATA_BYTES, metadataTooLarge, parseMetadata, type CosiMetadata } from './metadata.js';
import type { ByteSource } from '../transport/source.js';
import { padded, readTarIndex, type TarEntry, type TarIndex } from './tar.js';

export const COSI_MARKER = 'cosi-marker';
/** Enough for the marker, the metadata header and typical metadata in one request. */
export const DEFAULT_HEAD_BYTES = 64 * 1024;

export interface CosiArchive {
  source: ByteSource;
  size: number;
  /** Complete when opened with `full: true`; otherwise marker and metadata only. */
  index: TarIndex;
  marker: TarEntry;
  metadataEntry: TarEntry;
  /** The exact bytes of metadata.json: what --metadata-sha384 and the server's ETag cover. */
  metadataBytes: Buffer;
  metadataSha384: string;
  metadata: CosiMetadata;
  /** Reads made to open it (a request each for HTTP sources). */
  reads: number;
}

export interface OpenOptions {
  /** Walk every header (server indexing, validation); the client predicts offsets instead. */
  full?: boolean;
  headBytes?: number;
  window?: number;
  /** Refuse a metadata.json larger than this before reading it (default MAX_METADATA_BYTES). */
  maxMetadataBytes?: number;
}

/** What a non-COSI payload most likely is, so the one-line error can say so. */
export function sniff(head: Buffer): string {
  const text = head.subarray(0, 512).toString('latin1').trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html') || text.startsWith('<head')) return 'an HTML page';
  if (text.startsWith('{') || text.startsWith('[')) return 'a JSON document';
  if (text.startsWith('<?xml') || text.startsWith('<error')) return 'an XML document (an object store error?)';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'a zstd stream, not a tar archive';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'a gzip stream, not a tar archive';
  if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') return `a tar archive whose first entry is not ${COSI_MARKER}`;
  if (head.length === 0) return 'empty';
  return 'not a COSI archive';
}

/** Bytes that are no COSI archive, in the words every reader uses (cosi-fetch, the server, cosi-pack validate). */
export function notCosiFile(name: string, what: string): CosiError {
  return new CosiError('COSI_ERR_NOT_COSI', `${name} is not a COSI file (${what}): it must start with ${COSI_MARKER}`);
}

export function hasMarker(head: Buffer): boolean {
  return head.length >= COSI_MARKER.length && head.toString('latin1', 0, COSI_MARKER.length) === COSI_MARKER;
}

function isTar(head: Buffer): boolean {
  return head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar';
}

/** The start of a COSI archive, or of a tar whose first header is an extension header (validation names that). */
export function startsLikeCosi(head: Buffer): boolean {
  return hasMarker(head) || isTar(head);
}

export async function openCosi(src: ByteSource, opts: OpenOptions = {}): Promise<CosiArchive> {
  // Read before asking the size: over HTTP the first ranged response carries
  // the total, so opening costs one request instead of a HEAD plus a GET.
  const head = await src.read(0, opts.headBytes ?? DEFAULT_HEAD_BYTES);
  const size = await src.size();
  const stats = { reads: 1 };
  // A foreign writer may put a PAX header first (GNU tar --format=pax does); the
  // entry is still the marker, so read on and let validation flag the bytes.
  if (!startsLikeCosi(head)) {
    throw notCosiFile(src.name, sniff(head));
  }
  const first = await readTarIndex(src, { head, window: opts.window, stats, stopAfter: (_e, i) => i === 1 });
  const [marker, metadataEntry] = first.entries;
  if (!marker || marker.name !== COSI_MARKER || marker.type !== 'file') {
    throw notCosiFile(src.name, marker ? `a tar archive whose first entry is ${marker.name}` : 'a tar archive with no entries');
  }
  if (!metadataEntry || metadataEntry.name !== 'metadata.json') {
    throw new CosiError('COSI_ERR_NOT_COSI', `${src.name}: second tar entry must be metadata.json, found ${metadataEntry?.name ?? 'end of archive'}`);
  }
  const maxMetadataBytes = opts.maxMetadataBytes ?? MAX_METADATA_BYTES;
  if (metadataEntry.size > maxMetadataBytes) throw metadataTooLarge(`${src.name}: `, metadataEntry.size, maxMetadataBytes);
  let metadataBytes: Buffer;
  const end = metadataEntry.dataOffset + metadataEntry.size;
  if (end <= head.length) {
    metadataBytes = head.subarray(metadataEntry.dataOffset, end);
  } else {
    metadataBytes = await src.read(metadataEntry.dataOffset, metadataEntry.size);
    stats.reads++;
    if (metadataBytes.length < metadataEntry.size) {
      throw new CosiError('COSI_ERR_TRUNCATED', `${src.name}: archive ends inside metadata.json`);
    }
  }
  const metadata = parseMetadata(metadataBytes, maxMetadataBytes);
  const metadataSha384 = createHash('sha384').update(metadataBytes).digest('hex');
  const archive: CosiArchive = { source: src, size, index: first, marker, metadataEntry, metadataBytes, metadataSha384, metadata, reads: stats.reads };
  return opts.full ? completeIndex(archive, { head, window: opts.window }) : archive;
}

/** The rest of the tar index, walked from the end of metadata.json to the end-of-archive marker. */
export async function completeIndex(archive: CosiArchive, opts: { head?: Buffer; window?: number } = {}): Promise<CosiArchive> {
  const { marker, metadataEntry } = archive;
  const stats = { reads: 0 };
  const rest = await readTarIndex(archive.source, { head: opts.head, window: opts.window, stats, startOffset: metadataEntry.dataOffset + padded(metadataEntry.size) });
  return { ...archive, index: { ...rest, entries: [marker, metadataEntry, ...rest.entries] }, reads: archive.reads + stats.reads };
}
