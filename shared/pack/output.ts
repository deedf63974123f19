/**
 * Where a writer's output goes (cosi-pack and its reframe): what may be
 * replaced, a work directory beside it, and the rename that puts it in place.
 * The output is written under a temporary name and renamed over the path, so
 * only a regular file (or nothing) may be there, and never the input itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { systemError } from '../errno.js';
import { fileAt, sameFile } from '../cli/same-file.js';

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Why `output` cannot be written over, or undefined when it can: a directory,
 * anything else that is not a regular file (the rename would replace a device
 * or a pipe by a file), or the input itself (the rename would replace the
 * input). Said before any work, for a usage error.
 */
export async function outputProblem(output: string, input: string, inputName: string): Promise<string | undefined> {
  const out = await fileAt(output);
  if (!out) return undefined;
  if (out.isDirectory()) return `-o ${output} is a directory; give the file to write, e.g. -o ${join(output, 'image.cosi')}`;
  if (!out.isFile()) return `-o ${output} is ${kindOf(out)}; give the path of a regular file to write (it is written under a temporary name, then renamed)`;
  if (sameFile(out, await fileAt(input))) return `-o ${output} is the input ${inputName} itself; write to another path`;
  return undefined;
}

/** A private directory beside `output` for the pieces; a missing directory is said as one, not as the temporary name. */
export async function workDirFor(output: string, tag: string): Promise<string> {
  const outDir = dirname(output);
  return mkdtemp(join(outDir, `.${basename(output)}.${tag}-`)).catch((err: unknown) => {
    throw systemError(`cannot write ${output}`, err, { writing: true, dir: outDir });
  });
}

/** The temporary name the archive is written under, beside `output` so the rename is atomic. */
export function partialPathFor(output: string): string {
  return join(dirname(output), `.${basename(output)}.${randomBytes(4).toString('hex')}.partial`);
}

/** Rename the finished file over `output`; whether a file was there (the summary says it was replaced). */
export async function renameInto(tmp: string, output: string): Promise<boolean> {
  const replaced = await stat(output).then((st) => st.isFile(), () => false);
  await rename(tmp, output);
  return replaced;
}
