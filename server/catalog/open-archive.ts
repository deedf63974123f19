/**
 * What the catalog hands a request: an archive opened for it, local or
 * remote, with the record that describes exactly the bytes it serves.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { IndexRecord } from './indexer.js';

/** An archive opened for one request: the handle and the record that describes exactly its bytes. */
export interface OpenArchive {
  record: IndexRecord;
  /** Local archives only; a remote one streams from its origin. */
  fh?: FileHandle;
  /** The descriptor behind `fh`, valid until release(). */
  fd?: number;
  /** [offset, offset+length) of the file, with backpressure. */
  stream(offset: number, length: number): Readable;
  release(): Promise<void>;
}
