/**
 * Where each image lives in the archive: the tar index, walked to its end
 * when the image was opened (checkArchive), so every member's header has
 * been read and held against the metadata before any image is requested.
 * The walk reads headers only: one small read per image the first read did
 * not cover.
 */
import { CosiError } from '../shared/errors.js';
import type { TarEntry } from '../shared/format/tar.js';

export interface Located {
  path: string;
  dataOffset: number;
  size: number;
}

/** The first read of a walk past the head: a header and what small member follows it. */
export const WALK_WINDOW = 16 * 1024;

export class Locator {
  private readonly files = new Map<string, TarEntry>();

  constructor(
    entries: TarEntry[],
    private readonly name: string,
  ) {
    // Validation refuses duplicate paths; the first one is what every reader would take anyway.
    for (const e of entries) if (e.type === 'file' && !this.files.has(e.name)) this.files.set(e.name, e);
  }

  locate(path: string, size: number): Located {
    const e = this.files.get(path);
    if (!e) throw new CosiError('COSI_ERR_INVALID', `${this.name}: metadata lists ${path}, but the archive has no such file`);
    if (e.size !== size) throw new CosiError('COSI_ERR_INVALID', `${this.name}: ${path} is ${e.size} bytes in the archive, metadata says ${size}`);
    return { path, dataOffset: e.dataOffset, size: e.size };
  }
}
