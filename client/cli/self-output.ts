/**
 * An output that is the archive being read: `cosi-fetch -p root -o x.cosi
 * x.cosi` would rename the partition over its own source. Refused before
 * anything is written, by device and inode (a symlink, a hard link or
 * another spelling of the path is the same file).
 */
import { fileURLToPath } from 'node:url';
import { CosiError } from '../../shared/errors.js';
import { fileAt, sameFile } from '../../shared/cli/same-file.js';

/** The local file a source names (a path or a file:// URL); undefined for a network or store URL. */
function localPath(source: string): string | undefined {
  if (/^file:/i.test(source)) {
    try {
      return fileURLToPath(source);
    } catch {
      return undefined;
    }
  }
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source) ? undefined : source;
}

/** Throws a usage error when one of `outputs` is the file `source` reads. */
export async function refuseSourceAsOutput(source: string, outputs: readonly string[]): Promise<void> {
  const path = localPath(source);
  if (path === undefined || outputs.length === 0) return;
  const src = await fileAt(path);
  if (src === undefined) return;
  for (const out of outputs) {
    if (sameFile(src, await fileAt(out))) {
      throw new CosiError('COSI_ERR_USAGE', `-o ${out} is the archive being read (${source}); writing it would destroy its own source: give another output path`);
    }
  }
}
