/**
 * A ByteSource wrapper that remembers the small reads made while opening an
 * archive (the 64 KiB head, a large metadata.json) and serves later reads and
 * streams from them. The primary-GPT image and the first image headers nearly
 * always sit inside the head, so checking them costs no request; a small
 * archive can even be fetched entirely from the first read.
 *
 * Misses are widened by `readAhead` bytes: the read that completes a large
 * metadata.json then also brings the headers and GPT image that follow it.
 * Only read() results are kept, never streamed bulk data, and the total kept
 * is capped, so memory stays bounded whatever the archive size.
 */
import { Readable } from 'node:stream';
import type { ByteSource } from './source.js';

interface Piece {
  offset: number;
  bytes: Buffer;
}

export interface CachedSourceOptions {
  /** Extra bytes fetched past a read miss (not past the end of the source). */
  readAhead?: number;
  /** Upper bound on bytes kept; older pieces beyond it are dropped. */
  maxKept?: number;
}

export class CachedSource implements ByteSource {
  readonly name: string;
  private readonly pieces: Piece[] = [];
  private kept = 0;
  private readonly readAhead: number;
  private readonly maxKept: number;
  private total: number | undefined;
  /** Reads and streams that reached the inner source (requests, for HTTP). */
  readonly stats = { reads: 0, streams: 0, hits: 0, bytes: 0 };

  constructor(
    readonly inner: ByteSource,
    opts: CachedSourceOptions = {},
  ) {
    this.name = inner.name;
    this.readAhead = opts.readAhead ?? 64 * 1024;
    this.maxKept = opts.maxKept ?? 80 * 1024 * 1024;
  }

  async size(): Promise<number> {
    this.total ??= await this.inner.size();
    return this.total;
  }

  /**
   * The first read, made before anything asks for the size: over HTTP the
   * 206's Content-Range tells the size, so opening costs one request, not a
   * HEAD and a GET.
   */
  async prime(length: number): Promise<Buffer> {
    const got = await this.inner.read(0, length);
    this.stats.reads++;
    this.stats.bytes += got.length;
    this.keep(0, got);
    return got;
  }

  /** The kept bytes covering [offset, offset+length), when one piece covers it all. */
  peek(offset: number, length: number): Buffer | undefined {
    for (const p of this.pieces) {
      if (offset >= p.offset && offset + length <= p.offset + p.bytes.length) {
        return p.bytes.subarray(offset - p.offset, offset - p.offset + length);
      }
    }
    return undefined;
  }

  /** Bytes from offset 0 that are kept (the head read), for the tar walker's seed. */
  head(): Buffer | undefined {
    return this.pieces.find((p) => p.offset === 0)?.bytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const total = await this.size();
    const want = Math.max(0, Math.min(length, total - offset));
    const hit = this.peek(offset, want);
    if (hit) {
      this.stats.hits++;
      return hit;
    }
    const widened = Math.max(0, Math.min(want + this.readAhead, total - offset));
    // One turn of the event loop first: undici hands the connection of the read just finished
    // back to its pool only then, and a read sent at once would open another connection (a
    // TCP, perhaps TLS, handshake for each header of a tar walk).
    await new Promise<void>((resolve) => setImmediate(resolve));
    const got = await this.inner.read(offset, widened);
    this.stats.reads++;
    this.stats.bytes += got.length;
    this.keep(offset, got);
    return got.subarray(0, Math.min(want, got.length));
  }

  stream(offset: number, length: number): Readable {
    const hit = length > 0 ? this.peek(offset, length) : Buffer.alloc(0);
    if (hit) {
      this.stats.hits++;
      // A copy, so a consumer that mutates chunks cannot corrupt the cache.
      return Readable.from([Buffer.from(hit)], { objectMode: false });
    }
    this.stats.streams++;
    this.stats.bytes += length;
    return this.inner.stream(offset, length);
  }

  async close(): Promise<void> {
    this.pieces.length = 0;
    this.kept = 0;
    await this.inner.close();
  }

  private keep(offset: number, bytes: Buffer): void {
    if (bytes.length === 0 || bytes.length > this.maxKept) return;
    this.pieces.push({ offset, bytes });
    this.kept += bytes.length;
    // Keep the head (offset 0) longest: the tar walker seeds from it.
    while (this.kept > this.maxKept && this.pieces.length > 1) {
      const i = this.pieces.findIndex((p) => p.offset !== 0);
      const [dropped] = this.pieces.splice(i < 0 ? 0 : i, 1);
      this.kept -= dropped!.bytes.length;
    }
  }
}
