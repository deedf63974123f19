import { open, type FileHandle } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { CosiError } from '../errors.js';
import { systemError } from '../errno.js';
import { readAt } from './handle-source.js';
import type { ByteSource } from './source.js';

/** A local file as a ByteSource. One handle, opened lazily and shared by reads. */
export class FileSource implements ByteSource {
  readonly name: string;
  private handle: Promise<FileHandle> | undefined;
  private cachedSize: number | undefined;

  constructor(readonly path: string) {
    this.name = path;
  }

  private fh(): Promise<FileHandle> {
    this.handle ??= open(this.path, 'r').then(
      async (fh) => {
        // A directory opens fine and fails only at the first read, as a bare EISDIR.
        if ((await fh.stat()).isDirectory()) {
          await fh.close();
          throw new CosiError('COSI_ERR_IO', `${this.path} is a directory, not a file; give a file`);
        }
        return fh;
      },
      (err: NodeJS.ErrnoException) => {
        throw systemError(`cannot open ${this.path}`, err);
      },
    ).catch((err: unknown) => {
      this.handle = undefined;
      throw err;
    });
    return this.handle;
  }

  async size(): Promise<number> {
    if (this.cachedSize === undefined) {
      const st = await (await this.fh()).stat();
      this.cachedSize = st.size;
    }
    return this.cachedSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return readAt(await this.fh(), offset, length);
  }

  stream(offset: number, length: number): Readable {
    if (length <= 0) return Readable.from([]);
    return createReadStream(this.path, { start: offset, end: offset + length - 1, highWaterMark: 1 << 20 });
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await (await h).close();
  }
}
