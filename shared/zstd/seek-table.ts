/**
 * zstd's seekable format (facebook/zstd contrib/seekable_format): a trailing
 * skippable frame listing every frame's compressed and decompressed size, so
 * a reader finds frame N without decoding frames 0..N-1. Framed COSI images
 * end with one; any streaming zstd decoder skips it, so they stay readable by
 * single-frame readers.
 *
 * Layout, all little-endian: u32 skippable magic 0x184D2A5E, u32 Frame_Size,
 * then per frame u32 compressed size, u32 decompressed size (and u32 checksum
 * when the descriptor's bit 7 is set), then a 9-byte footer: u32 frame count,
 * one descriptor byte, u32 magic 0x8F92EAB1. Offsets are running sums from the
 * start of the data, so a leading skippable frame (the COSI id) is an entry
 * whose decompressed size is 0.
 */
import { CosiError } from '../errors.js';
import type { ByteSource } from '../transport/source.js';
import { readFrameHeader, u32le } from './frame.js';

export const SEEK_TABLE_MAGIC = 0x184d2a5e;
export const SEEKABLE_MAGIC = 0x8f92eab1;
export const SEEK_FOOTER_SIZE = 9;
/** The reference library's limits: more frames or larger frames are refused there, so here too. */
export const MAX_SEEK_FRAMES = 0x8000000;
export const MAX_FRAME_DECOMPRESSED = 1 << 30;
/** One small read of an entry's end finds a table of up to this many bytes (500 frames: 32 GiB in 64 MiB frames); larger ones take a second read. */
export const SEEK_TAIL_READ = 4 << 10;

export interface SeekEntry {
  compressedSize: number;
  decompressedSize: number;
  /** Low 32 bits of XXH64 of the frame's decompressed bytes, when the table carries checksums. */
  checksum?: number;
}

export interface SeekTable {
  entries: SeekEntry[];
  checksums: boolean;
  /** Bytes of the whole skippable frame holding the table. */
  size: number;
}

/** A frame's place in the compressed entry and in the decompressed image. */
export interface SeekFrame extends SeekEntry {
  index: number;
  compressedOffset: number;
  decompressedOffset: number;
}

/** The table's skippable frame for these entries (written without checksums: every zstd frame of ours carries its own). */
export function encodeSeekTable(entries: readonly SeekEntry[]): Buffer {
  const size = 8 + entries.length * 8 + SEEK_FOOTER_SIZE;
  const b = Buffer.alloc(size);
  b.writeUInt32LE(SEEK_TABLE_MAGIC, 0);
  b.writeUInt32LE(size - 8, 4);
  let p = 8;
  for (const e of entries) {
    b.writeUInt32LE(e.compressedSize, p);
    b.writeUInt32LE(e.decompressedSize, p + 4);
    p += 8;
  }
  b.writeUInt32LE(entries.length, p);
  b.writeUInt8(0, p + 4);
  b.writeUInt32LE(SEEKABLE_MAGIC, p + 5);
  return b;
}

/** details.rule of every error that blames a seek table, so reports can name the rule. */
export const SEEK_TABLE_RULE = 'seek-table';

export function seekTableError(message: string): CosiError {
  return new CosiError('COSI_ERR_ZSTD', `${message}: the image is corrupt or was written wrongly; repack it (cosi-pack reframe)`, { details: { rule: SEEK_TABLE_RULE } });
}

function lie(path: string, what: string): CosiError {
  return seekTableError(`${path}: the seek table ${what}`);
}

/**
 * The size of the table an entry ends with, from at least its last 9 bytes, or
 * undefined when the entry does not end with the seekable footer (not framed).
 */
export function seekTableSize(tail: Uint8Array, path: string): number | undefined {
  if (tail.length < SEEK_FOOTER_SIZE) return undefined;
  const f = tail.length - SEEK_FOOTER_SIZE;
  if (u32le(tail, f + 5) !== SEEKABLE_MAGIC) return undefined;
  const count = u32le(tail, f);
  const desc = tail[f + 4]!;
  if ((desc & 0x7c) !== 0) throw lie(path, `footer has reserved bits set (descriptor 0x${desc.toString(16)})`);
  if (count > MAX_SEEK_FRAMES) throw lie(path, `claims ${count} frames (at most ${MAX_SEEK_FRAMES})`);
  return 8 + count * (desc & 0x80 ? 12 : 8) + SEEK_FOOTER_SIZE;
}

/** Parses exactly the table's skippable frame (from seekTableSize's first byte to the entry's end). */
export function parseSeekTable(bytes: Uint8Array, path: string): SeekTable {
  const size = seekTableSize(bytes, path);
  if (size === undefined) throw lie(path, 'has no footer');
  if (bytes.length !== size) throw lie(path, `is ${bytes.length} bytes where its footer implies ${size}`);
  if (u32le(bytes, 0) !== SEEK_TABLE_MAGIC) throw lie(path, 'does not start with the skippable-frame magic 0x184D2A5E');
  if (u32le(bytes, 4) !== size - 8) throw lie(path, `frame declares ${u32le(bytes, 4)} bytes where its footer implies ${size - 8}`);
  const checksums = (bytes[size - 5]! & 0x80) !== 0;
  const step = checksums ? 12 : 8;
  const entries: SeekEntry[] = [];
  for (let p = 8; p < size - SEEK_FOOTER_SIZE; p += step) {
    const e: SeekEntry = { compressedSize: u32le(bytes, p), decompressedSize: u32le(bytes, p + 4) };
    if (e.decompressedSize > MAX_FRAME_DECOMPRESSED) throw lie(path, `lists a frame of ${e.decompressedSize} decompressed bytes (at most 1 GiB)`);
    if (checksums) e.checksum = u32le(bytes, p + 8);
    entries.push(e);
  }
  return { entries, checksums, size };
}

/** Each entry's offsets, as running sums. */
export function seekFrames(table: SeekTable): SeekFrame[] {
  let c = 0;
  let d = 0;
  return table.entries.map((e, index) => {
    const f: SeekFrame = { ...e, index, compressedOffset: c, decompressedOffset: d };
    c += e.compressedSize;
    d += e.decompressedSize;
    return f;
  });
}

/** The table must account for every byte of the entry and of the image; throws COSI_ERR_ZSTD when it does not. */
export function checkSeekTable(table: SeekTable, image: { path: string; compressedSize: number; uncompressedSize: number }): SeekFrame[] {
  const frames = seekFrames(table);
  const last = frames.at(-1);
  const c = last ? last.compressedOffset + last.compressedSize : 0;
  const d = last ? last.decompressedOffset + last.decompressedSize : 0;
  if (c + table.size !== image.compressedSize) {
    throw lie(image.path, `lists ${frames.length} frames of ${c} compressed bytes, but the entry holds ${image.compressedSize - table.size} before the table`);
  }
  if (d !== image.uncompressedSize) throw lie(image.path, `lists ${d} decompressed bytes, but uncompressedSize is ${image.uncompressedSize}`);
  if (frames.some((f) => f.compressedSize === 0)) throw lie(image.path, 'lists a frame of 0 compressed bytes');
  return frames;
}

/** Bytes enough for the COSI id's skippable frame and the first frame header. */
export const FIRST_FRAME_BYTES = 64;

/**
 * The content size the image's first zstd frame declares (skippable frames
 * before it passed over), from `first`, the start of the image
 * (FIRST_FRAME_BYTES, or the whole image if shorter); undefined when it
 * declares none or cannot be read from these bytes.
 */
export function firstFrameSize(first: Uint8Array | undefined): number | undefined {
  if (!first) return undefined;
  try {
    for (let off = 0; off < first.length; ) {
      const h = readFrameHeader(first, off);
      if (!h) return undefined;
      if (h.kind === 'frame') return h.contentSize;
      off += h.size;
    }
  } catch {
    // Not zstd at all: the decoder will say so.
  }
  return undefined;
}

/**
 * Whether an image's first zstd frame declares less than the whole image:
 * only then can it be framed, so only then is its seek table worth a read.
 * Unknown is no.
 */
export function firstFrameIsPart(first: Uint8Array | undefined, uncompressedSize: number): boolean {
  const size = firstFrameSize(first);
  return size !== undefined && size < uncompressedSize;
}

/**
 * Reads an image's seek table from the end of its tar entry (one small read,
 * two for tables past SEEK_TAIL_READ), checked against the image's sizes.
 * Undefined when the entry does not end with a seekable footer.
 */
export async function readSeekTable(
  src: Pick<ByteSource, 'read'>,
  entry: { dataOffset: number },
  image: { path: string; compressedSize: number; uncompressedSize: number },
): Promise<{ table: SeekTable; frames: SeekFrame[] } | undefined> {
  const end = entry.dataOffset + image.compressedSize;
  const first = Math.min(image.compressedSize, SEEK_TAIL_READ);
  let tail = await src.read(end - first, first);
  const size = seekTableSize(tail, image.path);
  if (size === undefined) return undefined;
  if (size > image.compressedSize) throw lie(image.path, `claims ${size} bytes, more than the whole ${image.compressedSize}-byte entry`);
  if (size > tail.length) tail = await src.read(end - size, size);
  // A footer magic without the table's own magic where the footer puts its start is a frame that happens to end in those 4 bytes.
  if (u32le(tail, tail.length - size) !== SEEK_TABLE_MAGIC) return undefined;
  const table = parseSeekTable(tail.subarray(tail.length - size), image.path);
  return { table, frames: checkSeekTable(table, image) };
}
