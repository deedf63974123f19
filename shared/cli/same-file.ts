/**
 * Whether two paths are one file, by device and inode (a symlink, a hard link
 * or another spelling of the path is the same file): the command lines refuse
 * an output that is their own input before any work.
 */
import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/** stat follows symlinks: the file a path names in the end, or undefined when there is none. */
export async function fileAt(path: string): Promise<Stats | undefined> {
  return stat(path).catch(() => undefined);
}

export function sameFile(a: Stats | undefined, b: Stats | undefined): boolean {
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}
