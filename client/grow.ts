/**
 * Growing a shrunk ext2/3/4 filesystem to fill its partition. A writer may
 * shrink filesystems (resize2fs -M) to save bandwidth; after writing, the
 * filesystem is grown back so the installed system gets the whole partition.
 *
 * Only whole files and devices are resized: resize2fs on a disk image file
 * with an ?offset= suffix truncates the whole image file to the filesystem's
 * new size, destroying what follows, so the disk writer grows a partition in
 * a separate file before placing it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CosiError } from '../shared/errors.js';

const run = promisify(execFile);

export function isExt(fsType: string | undefined): boolean {
  return fsType === 'ext2' || fsType === 'ext3' || fsType === 'ext4';
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; stdout?: string; message: string };
  return (e.stderr || e.stdout || e.message).trim().split('\n').filter(Boolean).pop() ?? 'failed';
}

/**
 * e2fsck -f first (resize2fs insists on a freshly checked filesystem), then
 * resize2fs to `sizeBytes`, or to the whole file/device when omitted.
 */
export async function growExt(path: string, sizeBytes?: number): Promise<void> {
  try {
    await run('e2fsck', ['-f', '-p', path]);
  } catch (err) {
    // 1 means "errors corrected"; anything above is a real problem.
    const code = (err as { code?: number }).code;
    if (code !== 1) throw new CosiError('COSI_ERR_IO', `e2fsck ${path} before growing failed: ${firstLine(err)}`, { cause: err });
  }
  const args = [path];
  if (sizeBytes !== undefined) args.push(`${Math.floor(sizeBytes / 1024)}K`);
  try {
    await run('resize2fs', args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new CosiError('COSI_ERR_UNSUPPORTED', '--grow needs resize2fs (e2fsprogs), which is not installed');
    throw new CosiError('COSI_ERR_IO', `resize2fs ${path} failed: ${firstLine(err)}`, { cause: err });
  }
}
