/**
 * Holds a seek table against the frames it describes, in one pass over the
 * entry: every entry must start a frame (zstd or skippable) exactly where the
 * running sums put it, hold exactly one frame, and decode to its listed size.
 * Used by `cosi-pack validate --deep`; a fresh decoder per frame, since the
 * point is that each frame stands alone.
 */
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CosiError, isCosiError } from '../errors.js';
import { createZstdDecoder } from './decoder.js';
import { FrameScanner, readFrameHeader } from './frame.js';
import { SEEK_TABLE_RULE, seekTableError, type SeekFrame } from './seek-table.js';

export class SeekTableCheck extends Writable {
  private pos = 0;
  private index = 0;
  private head: Buffer = Buffer.alloc(0);
  private current: { write: (b: Buffer) => Promise<void>; end: () => Promise<void> } | undefined;

  constructor(
    private readonly frames: readonly SeekFrame[],
    private readonly path: string,
    private readonly maxWindowLog: number,
    /** Receives the decoded bytes in order (reframe keeps them); dropped when absent. */
    private readonly out?: (chunk: Buffer) => Promise<void>,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.consume(chunk).then(() => cb(), (err: unknown) => cb(this.explain(err)));
  }

  private async consume(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length && this.index < this.frames.length) {
      const f = this.frames[this.index]!;
      const end = f.compressedOffset + f.compressedSize;
      const piece = chunk.subarray(off, off + Math.min(chunk.length - off, end - this.pos));
      await this.feed(f, piece);
      this.pos += piece.length;
      off += piece.length;
      if (this.pos === end) {
        await this.finishFrame(f);
        this.index++;
      }
    }
    // What follows the last frame is the table itself, already parsed from these bytes.
  }

  private async feed(f: SeekFrame, piece: Buffer): Promise<void> {
    if (this.current) return this.current.write(piece);
    this.head = Buffer.concat([this.head, piece]);
    const h = readFrameHeader(this.head);
    if (h === undefined) return;
    if (h.kind === 'skippable') {
      if (h.size !== f.compressedSize || f.decompressedSize !== 0) {
        throw this.lie(f, `a skippable frame of ${h.size} bytes sits where the table lists ${f.compressedSize} bytes decoding to ${f.decompressedSize}`);
      }
      this.current = { write: async () => {}, end: async () => {} };
    } else {
      this.current = this.startDecoder(f);
      await this.current.write(this.head);
    }
    this.head = Buffer.alloc(0);
  }

  private startDecoder(f: SeekFrame): { write: (b: Buffer) => Promise<void>; end: () => Promise<void> } {
    const decoder = createZstdDecoder({ maxWindowLog: this.maxWindowLog, expectedSize: f.decompressedSize });
    const scanner = new FrameScanner(() => {}, false);
    const out = this.out;
    const done = pipeline(decoder, new Writable({ write: (c: Buffer, _e, cb) => (out ? out(c).then(() => cb(), cb) : cb()) }));
    done.catch(() => {});
    return {
      write: (b) =>
        new Promise<void>((resolve, reject) => {
          scanner.feed(b);
          if (scanner.framesSeen > 1) reject(this.lie(f, 'covers more than one frame'));
          else decoder.write(b, (err) => (err ? reject(err) : resolve()));
        }),
      end: async () => {
        decoder.end();
        await done;
      },
    };
  }

  private async finishFrame(f: SeekFrame): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (!current) throw this.lie(f, `is too short to hold a frame header (${f.compressedSize} bytes)`);
    await current.end();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.index < this.frames.length) cb(new CosiError('COSI_ERR_TRUNCATED', `${this.path}: entry ends inside frame ${this.index} of its seek table`));
    else cb();
  }

  private lie(f: SeekFrame, what: string): CosiError {
    return seekTableError(`${this.path}: seek table entry ${f.index} (compressed bytes ${f.compressedOffset}-${f.compressedOffset + f.compressedSize}) ${what}`);
  }

  /** A frame that fails to decode on its own at the listed place and size is the table's fault or the frame's: say which entry. */
  private explain(err: unknown): Error {
    const f = this.frames[this.index];
    if (!f || !isCosiError(err) || err.details?.['rule'] === SEEK_TABLE_RULE) return err as Error;
    if (err.code === 'COSI_ERR_SIZE_MISMATCH' || err.code === 'COSI_ERR_ZSTD') return this.lie(f, `does not decode to ${f.decompressedSize} bytes on its own: ${err.message}`);
    return err;
  }
}
