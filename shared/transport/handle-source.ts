/**
 * A ByteSource over an already open file handle. Indexing and serving read
 * through the handle whose fstat identified the file, so a rename that
 * swaps the path mid-request can never mix the old index with new bytes.
 * Its positional read and range stream serve any open handle (FileSource too).
 */
import { read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ByteSource } from './source.js';

/** Large reads: the kernel's readahead does the rest, and fewer syscalls per GiB. */
export const READ_CHUNK = 1 << 20;

export class HandleSource implements ByteSource {
  constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    private readonly length: number,
  ) {}

  async size(): Promise<number> {
    return this.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return readAt(this.fh, offset, Math.max(0, Math.min(length, this.length - offset)));
  }

  stream(offset: number, length: number): Readable {
    return streamRange(this.fh, offset, length);
  }

  /** The handle belongs to whoever opened it. */
  async close(): Promise<void> {}
}

/** Bytes [offset, offset+length) of an open handle, fewer only where the file ends first. */
export async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/**
 * Bytes [offset, offset+length) of an open handle (or its descriptor) as a stream, fewer only where
 * the file ends first, leaving the descriptor open for the next range.
 *
 * Positional reads on the descriptor, not fs.createReadStream({ fd: FileHandle }): that one adds a
 * 'close' listener to the handle per stream and never removes it, so on a handle kept open between
 * requests every stream ever made stayed reachable (a server leaked one ReadStream per multipart
 * part and per ?decompress=1). Nothing here registers on the handle. The holder keeps the handle
 * open until the stream has emitted 'close'; destroying the stream waits for a read in flight first.
 */
export function streamRange(fh: FileHandle | number, offset: number, length: number, chunk = READ_CHUNK): Readable {
  if (length <= 0) return Readable.from([]);
  return new RangeReader(typeof fh === 'number' ? fh : fh.fd, offset, length, chunk);
}

class RangeReader extends Readable {
  private reading = false;
  private afterRead: (() => void) | undefined;

  constructor(
    private readonly fd: number,
    private position: number,
    private left: number,
    private readonly chunk: number,
  ) {
    super({ highWaterMark: chunk });
  }

  override _read(): void {
    if (this.left <= 0) return void this.push(null);
    const n = Math.min(this.left, this.chunk);
    const buf = Buffer.allocUnsafe(n);
    this.reading = true;
    read(this.fd, buf, 0, n, this.position, (err, got) => {
      this.reading = false;
      const after = this.afterRead;
      if (after) return after(); // destroyed meanwhile: the bytes are not wanted
      if (err) return void this.destroy(err);
      if (got === 0) return void this.push(null); // the file ends before the range: fewer bytes, as documented
      this.position += got;
      this.left -= got;
      this.push(got === n ? buf : buf.subarray(0, got));
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // 'close' (which tells the holder it may close the descriptor) waits for the read in flight.
    if (this.reading) this.afterRead = () => cb(err);
    else cb(err);
  }
}
