/**
 * Folder shared/transport/: byte sources (this interface; file, open-handle and HTTP sources), RFC 9110
 * range rules and positional writes. Imports errors.ts, errno.ts and undici only; everything else may import it.
 */
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

/**
 * Chunks that exist only for the stream that produced them: HttpSource's
 * stream() yields each socket read as it came, a buffer of its own that
 * nothing else references. Node frees such a buffer only when a garbage
 * collection finds it dead, and on a thread that allocates little else that
 * is rare: 20-35 MiB of read buffers waited at a time (a third of the
 * client's memory budget), and were faulted in again once handed back.
 * A consumer that is the last to see a chunk (only pump() knows that; a
 * stream can be piped to several consumers) gives it back at once with
 * releaseChunk. Marked are ArrayBuffers a chunk covers whole, so a slice, a
 * pooled small buffer or a cached head is never touched, and only chunks from
 * our own undici Agent (a caller's dispatcher may keep what it delivers).
 */
const exclusive = new WeakSet<ArrayBufferLike>();

/** Detaching frees the memory at once; runtimes without transfer() (Node 20) leave it to the GC. */
const canRelease = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';

export function markExclusive(chunk: Uint8Array): void {
  if (canRelease && chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength) exclusive.add(chunk.buffer);
}

/** Whether releaseChunk would give this chunk's memory back. */
export function isExclusive(chunk: Uint8Array): boolean {
  return exclusive.has(chunk.buffer) && chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
}

/** Gives a marked chunk's memory back; views of it read as empty afterwards. Unmarked chunks are left alone. */
export function releaseChunk(chunk: Uint8Array): void {
  if (!isExclusive(chunk)) return;
  const ab = chunk.buffer;
  exclusive.delete(ab);
  try {
    (ab as ArrayBuffer & { transfer(n: number): ArrayBuffer }).transfer(0);
  } catch {
    // Not detachable after all (a buffer marked untransferable): the GC frees it, as before.
  }
}
