/**
 * A ByteSource over an already open file handle. Indexing and serving read
 * through the handle whose fstat identified the file, so a rename that
 * swaps the path mid-request can never mix the old index with new bytes.
 * Its positional read and range stream serve any open handle (FileSource too).
 */
import { createReadStream } from 'node:fs';
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

/** Bytes [offset, offset+length) of an open handle as a stream, leaving the handle open for the next range. */
export function streamRange(fh: FileHandle, offset: number, length: number): Readable {
  if (length <= 0) return Readable.from([]);
  return createReadStream('', { fd: fh, start: offset, end: offset + length - 1, highWaterMark: READ_CHUNK, autoClose: false, emitClose: true });
}
