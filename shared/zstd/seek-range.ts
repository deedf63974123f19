/**
 * Random access into a framed image: bytes [start, end] of the decompressed
 * image from only the frames that cover them, found in the seek table. The
 * compressed bytes from the first covering frame to the last are decoded in
 * one stream (a skippable frame between them is skipped) and the output cut
 * to the range. Each frame's own zstd checksum guards what is decoded; the
 * image's SHA-384 covers the whole entry and so cannot vouch for a range.
 */
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream';
import { CosiError } from '../errors.js';
import { createZstdDecoder } from './decoder.js';
import type { SeekFrame } from './seek-table.js';

export interface FrameSpan {
  /** Entry offsets of the covering frames' compressed bytes, [from, to). */
  from: number;
  to: number;
  /** Image offset where their decoded bytes begin, and how many they are. */
  decodedAt: number;
  decodedSize: number;
}

/** The frames whose decoded bytes cover image bytes [start, end] (inclusive). */
export function framesCovering(frames: readonly SeekFrame[], start: number, end: number): FrameSpan {
  const data = frames.filter((f) => f.decompressedSize > 0);
  const first = data.find((f) => f.decompressedOffset + f.decompressedSize > start);
  const last = [...data].reverse().find((f) => f.decompressedOffset <= end);
  if (!first || !last || start > end) throw new CosiError('COSI_ERR_USAGE', `bytes ${start}-${end} are outside the image`);
  return {
    from: first.compressedOffset,
    to: last.compressedOffset + last.compressedSize,
    decodedAt: first.decompressedOffset,
    decodedSize: last.decompressedOffset + last.decompressedSize - first.decompressedOffset,
  };
}

/** Passes `length` bytes after skipping `skip`, then drops the rest. */
class Window extends Transform {
  constructor(
    private skip: number,
    private left: number,
  ) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let c = chunk;
    if (this.skip > 0) {
      const n = Math.min(this.skip, c.length);
      this.skip -= n;
      c = c.subarray(n);
    }
    if (this.left > 0 && c.length > 0) {
      const out = c.subarray(0, Math.min(this.left, c.length));
      this.left -= out.length;
      this.push(out);
    }
    cb();
  }
}

/**
 * Image bytes [start, end] (inclusive) as a stream; `stream(offset, length)`
 * reads the entry's compressed bytes. Errors instead of ending short.
 */
export function decodeFrameRange(stream: (offset: number, length: number) => Readable, frames: readonly SeekFrame[], maxWindowLog: number, start: number, end: number): Readable {
  const span = framesCovering(frames, start, end);
  const decoder = createZstdDecoder({ maxWindowLog, expectedSize: span.decodedSize });
  return pipeline(stream(span.from, span.to - span.from), decoder, new Window(start - span.decodedAt, end - start + 1), () => undefined) as Readable;
}
