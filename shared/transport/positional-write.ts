/**
 * Positional writes of a byte stream into an open file or block device, used
 * on the main thread (client/range-writer.ts) and inside the decode worker
 * (zstd/worker.ts), which writes each piece while it is still in its cache.
 *
 * Sparse mode (regular files only: the target must read as zeros where
 * nothing is written, i.e. a fresh file extended with ftruncate) skips every
 * 64 KiB-aligned block that is all zeros. On a block device every byte is
 * written: old data there is not zeros.
 */
import { writeSync } from 'node:fs';
import { CosiError } from '../errors.js';
import { systemError } from '../errno.js';

export const HOLE_BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(HOLE_BLOCK);

/**
 * Page-cache writes cost far more in large calls when the memory behind the
 * cache is cold (this kernel backs a large write with large folios): 1 GiB
 * written here in 2 MiB calls took 2.0 s, in 128 KiB calls 0.7 s (warm:
 * 0.15 s either way). So runs are written as 128 KiB pieces.
 */
export const PIECE = 128 << 10;

function isZero(b: Uint8Array): boolean {
  // memcmp against a static zero block: far faster than a JS loop.
  return b.length <= HOLE_BLOCK && Buffer.from(b.buffer, b.byteOffset, b.length).equals(ZEROS.subarray(0, b.length));
}

/**
 * The runs of `chunk` (which lands at absolute offset `pos`) that must be
 * written: all of it, or in sparse mode everything but the all-zero blocks,
 * split at absolute 64 KiB boundaries with neighbouring data blocks joined.
 * Returns the hole bytes skipped.
 */
export function forEachRun(chunk: Uint8Array, pos: number, sparse: boolean, run: (start: number, end: number) => void): number {
  if (!sparse) {
    if (chunk.length > 0) run(0, chunk.length);
    return 0;
  }
  let holes = 0;
  let runStart = -1;
  for (let i = 0; i < chunk.length; ) {
    const end = Math.min(chunk.length, i + (HOLE_BLOCK - ((pos + i) % HOLE_BLOCK)));
    if (isZero(chunk.subarray(i, end))) {
      if (runStart >= 0) run(runStart, i);
      runStart = -1;
      holes += end - i;
    } else if (runStart < 0) {
      runStart = i;
    }
    i = end;
  }
  if (runStart >= 0) run(runStart, chunk.length);
  return holes;
}

/** Blocking pwrite of all of `buf` at `pos`, in PIECE-sized calls. */
export function writeAllSync(fd: number, buf: Uint8Array, pos: number, label: string): void {
  for (let at = 0; at < buf.length; ) {
    const end = Math.min(buf.length, at + PIECE);
    let n: number;
    try {
      n = writeSync(fd, buf, at, end - at, pos + at);
    } catch (err) {
      throw writeFailed(label, pos + at, err);
    }
    if (n === 0) throw acceptedNothing(label, pos + at);
    at += n;
  }
}

/** The ways a positional write fails, worded once for every writer. */
export function writeFailed(label: string, at: number, err: unknown): CosiError {
  const e = err as NodeJS.ErrnoException;
  return systemError(`${label}: write failed at byte ${at}`, e, { code: 'COSI_ERR_IO' });
}

export function acceptedNothing(label: string, at: number): CosiError {
  return new CosiError('COSI_ERR_IO', `${label}: device accepted no bytes at ${at} (full?)`);
}

export function largerThanPartition(label: string, limit: number): CosiError {
  return new CosiError('COSI_ERR_INVALID', `${label}: image is larger than its partition (${limit} bytes)`);
}

/** Where the decode worker writes an image: an fd of this process, from `position` on. */
export interface WriteTarget {
  fd: number;
  position: number;
  sparse: boolean;
  /** Refuse to write past this many bytes (the partition's size). */
  limit?: number;
  /** For messages. */
  label: string;
}

/** What a target writer has done since it was last asked. */
export interface WriteReport {
  /** Bytes accepted, holes included. */
  bytes: number;
  /** Bytes skipped as holes. */
  holes: number;
  /** Bytes handed to the kernel (what write-behind counts). */
  kernel: number;
}

/** A WriteTarget written with blocking calls, counting what it did. */
export class TargetWriter {
  private written = 0;
  private readonly report: WriteReport = { bytes: 0, holes: 0, kernel: 0 };

  constructor(private readonly t: WriteTarget) {}

  put(chunk: Uint8Array): void {
    const { t } = this;
    if (t.limit !== undefined && this.written + chunk.length > t.limit) throw largerThanPartition(t.label, t.limit);
    const pos = t.position + this.written;
    this.report.holes += forEachRun(chunk, pos, t.sparse, (s, e) => {
      writeAllSync(t.fd, chunk.subarray(s, e), pos + s, t.label);
      this.report.kernel += e - s;
    });
    this.written += chunk.length;
    this.report.bytes += chunk.length;
  }

  /** The counts since the last take(), reset. */
  take(): WriteReport {
    const r = { ...this.report };
    this.report.bytes = this.report.holes = this.report.kernel = 0;
    return r;
  }
}
