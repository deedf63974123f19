/**
 * What the writer records about the OS inside the image: /etc/os-release and
 * the package list. Given on the command line, or read from an ext2/3/4 root
 * with debugfs so a publisher does not have to mount anything.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { CosiError } from '../errors.js';
import type { OsPackage } from '../format/metadata.js';
import { systemError } from '../errno.js';

const run = promisify(execFile);

/** Parse `rpm -qa --queryformat "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n"` output, or a JSON array of packages. */
export function parsePackageList(text: string, source = 'package list'): OsPackage[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (err) {
      throw new CosiError('COSI_ERR_USAGE', `${source}: not valid JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(parsed)) throw new CosiError('COSI_ERR_USAGE', `${source}: expected a JSON array of packages`);
    return parsed.map((p, i) => {
      const o = p as Record<string, unknown>;
      for (const k of ['name', 'version', 'release', 'arch']) {
        if (typeof o?.[k] !== 'string') throw new CosiError('COSI_ERR_USAGE', `${source}: package ${i} has no string '${k}'`);
      }
      return { name: o.name as string, version: o.version as string, release: o.release as string, arch: o.arch as string };
    });
  }
  const out: OsPackage[] = [];
  trimmed.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const parts = l.split(/\s+/);
    if (parts.length !== 4) {
      throw new CosiError('COSI_ERR_USAGE', `${source}:${i + 1}: expected 'NAME VERSION RELEASE ARCH', got ${JSON.stringify(l)}`);
    }
    const [name, version, release, arch] = parts as [string, string, string, string];
    out.push({ name, version, release, arch });
  });
  return out;
}

/**
 * The text of a file named by a flag (--packages FILE); a missing or
 * unreadable one is a usage mistake naming the flag, with `hint` (what the
 * flag takes) in place of the generic one when given.
 */
export async function readFlagFile(flag: string, path: string, hint?: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw systemError(`${flag} ${path}`, err, { code: 'COSI_ERR_USAGE', hint });
  }
}

export async function readPackageFile(path: string): Promise<OsPackage[]> {
  return parsePackageList(await readFlagFile('--packages', path), path);
}

/**
 * Read a file from an ext2/3/4 filesystem at `offset` inside `image`, following
 * one level of symlink (os-release is usually a link to ../usr/lib/os-release).
 * Returns undefined when debugfs is missing or the file is not there.
 */
export async function readExtFile(image: string, offset: number, path: string): Promise<string | undefined> {
  // libext2fs' unix I/O manager takes "?offset=N", which saves copying the partition out.
  const dev = `${image}?offset=${offset}`;
  const debugfs = async (cmd: string): Promise<string | undefined> => {
    try {
      const { stdout } = await run('debugfs', ['-R', cmd, dev], { maxBuffer: 16 << 20, encoding: 'utf8' });
      return stdout;
    } catch {
      return undefined;
    }
  };
  let target = path;
  for (let hops = 0; hops < 4; hops++) {
    const stat = await debugfs(`stat "${target}"`);
    if (stat === undefined || !/Inode:/.test(stat)) return undefined;
    const link = /Fast link dest: "(.*)"/.exec(stat);
    if (!link) break;
    const dest = link[1]!;
    target = dest.startsWith('/') ? dest : `${target.slice(0, target.lastIndexOf('/'))}/${dest}`;
  }
  return debugfs(`cat "${target}"`);
}
