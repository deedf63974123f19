/**
 * A Writable that puts a stream of bytes at a fixed position of an open file
 * or block device, with positional writes (so several partitions can be
 * written into one disk at once). Sparse mode and the piece size are
 * shared/transport/positional-write.ts's.
 *
 * As a ChunkSink it can also hand its file to the decode worker
 * (writeTarget), which then writes there itself and reports back (wrote).
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import {
  acceptedNothing, forEachRun, largerThanPartition, PIECE, writeAllSync, writeFailed, type WriteReport, type WriteTarget,
} from '../shared/transport/positional-write.js';
import { CHUNK_SINK } from './chunk-sink.js';
import type { WriteBehind } from './write-behind.js';

export { HOLE_BLOCK } from '../shared/transport/positional-write.js';

export interface RangeWriterOptions {
  sparse: boolean;
  /** Refuse to write past this many bytes (the partition's size). */
  limit?: number;
  /** Hash of everything written, holes included (for --verify-after). */
  digest?: string;
  onBytes?: (n: number) => void;
  /** Told of every byte handed to the kernel (holes are not written, so not counted). */
  behind?: WriteBehind;
  /**
   * Blocking pwrite calls on this thread instead of the thread pool (cosi-fetch
   * sets it). Each call blocks the event loop for one 128 KiB piece: 0.1 ms
   * with warm memory, about 1.5 ms cold; a thread-pool write costs two thread
   * hand-offs per piece instead (1 GiB root: 1.85-2.5 s blocking against
   * 2.9-3.5 s through the pool, on 2 cores). Writes through writeTarget()
   * are always blocking, in the decode worker.
   */
  sync?: boolean;
  /** For messages. */
  label: string;
}

export class RangeWriter extends Writable {
  /** put() is done with a chunk when it settles (see ChunkSink). */
  readonly [CHUNK_SINK] = true;
  /** Bytes accepted so far (holes included). */
  written = 0;
  /** Bytes skipped as holes. */
  holes = 0;
  readonly hash: Hash | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly base: number,
    private readonly opts: RangeWriterOptions,
  ) {
    // Large buffer: the decoder keeps working while a write is in flight.
    super({ highWaterMark: 4 << 20 });
    this.hash = opts.digest ? createHash(opts.digest) : undefined;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.put(chunk).then(() => cb(), (err: unknown) => cb(err as Error));
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    (async () => {
      for (const { chunk } of chunks) await this.put(chunk);
    })().then(() => cb(), (err: unknown) => cb(err as Error));
  }

  /**
   * Writes one chunk (what _write does); done with `chunk` when it settles, so
   * the worker decoder can hand over a buffer it reuses.
   */
  async put(chunk: Buffer): Promise<void> {
    if (this.opts.limit !== undefined && this.written + chunk.length > this.opts.limit) throw largerThanPartition(this.opts.label, this.opts.limit);
    this.hash?.update(chunk);
    const pos = this.base + this.written;
    const runs: Array<[number, number]> = [];
    this.holes += forEachRun(chunk, pos, this.opts.sparse, (s, e) => void runs.push([s, e]));
    for (const [s, e] of runs) await this.writeAll(chunk.subarray(s, e), pos + s);
    this.written += chunk.length;
    this.opts.onBytes?.(chunk.length);
  }

  /**
   * The file as a target the decode worker writes itself, from where this
   * writer stands; none when a digest of the written bytes is wanted (that
   * needs the bytes here). Only one writer may use the file meanwhile.
   */
  writeTarget(): WriteTarget | undefined {
    if (this.hash) return undefined;
    const { limit, sparse, label } = this.opts;
    return { fd: this.fh.fd, position: this.base + this.written, sparse, label, limit: limit === undefined ? undefined : limit - this.written };
  }

  /** What the worker wrote through writeTarget(), accounted as put() would have. */
  wrote(r: WriteReport): void {
    this.written += r.bytes;
    this.holes += r.holes;
    if (r.kernel > 0) this.opts.behind?.wrote(r.kernel);
    if (r.bytes > 0) this.opts.onBytes?.(r.bytes);
  }

  private async writeAll(buf: Buffer, pos: number): Promise<void> {
    if (this.opts.sync) writeAllSync(this.fh.fd, buf, pos, this.opts.label);
    else await writeInPieces(this.fh, buf, pos, this.opts.label);
    this.opts.behind?.wrote(buf.length);
  }

}

/** Two pieces in flight, so the thread pool never waits on our turn-around. */
const LANES = 2;

async function writeInPieces(fh: FileHandle, buf: Buffer, pos: number, label: string): Promise<void> {
  if (buf.length <= PIECE) return writeFully(fh, buf, pos, label);
  let next = 0;
  let failure: unknown;
  const lane = async (): Promise<void> => {
    while (next < buf.length && failure === undefined) {
      const at = next;
      next += PIECE;
      try {
        await writeFully(fh, buf.subarray(at, at + PIECE), pos + at, label);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  // Both lanes finish before we return, so no write still reads `buf` once the caller reuses it.
  await Promise.all(Array.from({ length: LANES }, lane));
  if (failure !== undefined) throw failure;
}

/** Write all of `buf` at `pos`: short writes continue, and a write that takes nothing is a full device. */
export async function writeFully(fh: FileHandle, buf: Buffer, pos: number, label: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    let n: number;
    try {
      ({ bytesWritten: n } = await fh.write(buf, off, buf.length - off, pos + off));
    } catch (err) {
      throw writeFailed(label, pos + off, err);
    }
    if (n === 0) throw acceptedNothing(label, pos + off);
    off += n;
  }
}
