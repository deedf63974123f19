import type { Readable } from 'node:stream';

/**
 * Random-access bytes: a local file, an HTTP(S) URL honouring Range, or
 * anything else that can answer "give me bytes [offset, offset+length)".
 * The tar walker, the metadata reader and the server's remote catalogs all
 * read through this, so they never care where the archive lives.
 */
export interface ByteSource {
  /** Human-readable name for error messages (a path or a URL). */
  readonly name: string;
  /** Total size in bytes. */
  size(): Promise<number>;
  /**
   * Exactly `length` bytes at `offset`, or fewer only when the source ends
   * first (the caller decides whether that is truncation).
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** The same range as a stream with backpressure, for bulk data. */
  stream(offset: number, length: number): Readable;
  close(): Promise<void>;
}
