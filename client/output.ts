/**
 * Output targets. A regular file is written under a temporary name in the
 * same directory and renamed over the final name only after every check
 * passed, so a failed or interrupted fetch never leaves a file that looks
 * complete. A block device is written in place, after making sure it is not
 * in use and is large enough, and fsynced before success is reported.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, unlinkSync } from 'node:fs';
import { open, readFile, readdir, realpath, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CosiError } from '../shared/errors.js';
import { WriteBehind } from './write-behind.js';
import { missingDirectory, systemError } from '../shared/errno.js';

const run = promisify(execFile);

export interface Target {
  kind: 'file' | 'device';
  /** What the user named. */
  path: string;
  /** Where bytes go: a temporary sibling for files, the device itself otherwise. */
  writePath: string;
  fh: FileHandle;
  /** Device size; for files the size they are truncated to. */
  size: number;
  /** Device logical sector size (files: undefined). */
  sectorSize?: number;
  /** Flushes along the way; every writer into fh reports to it. */
  behind: WriteBehind;
  /** A working file of ours (a partition grown beside a disk), never the user's output. */
  scratch?: boolean;
  /** A regular file was at `path`: the commit replaces it (the rule, as curl -o: the new file takes its place, atomically). */
  replaces?: boolean;
}

/**
 * Targets opened and not yet committed or aborted: what an interrupt
 * (SIGINT, SIGTERM, SIGHUP) must clean up, since no finally block runs then.
 */
const live = new Set<Target>();
/** Temporary names being created: a signal may land after open() made the file, before it is a Target. */
const creating = new Set<string>();

/** --resume outputs being written: an interrupt keeps them (with their journals) for the next run. */
const resumable = new Map<string, string>();

/** `scratch`: a file of the resumable output's that an interrupt removes (a journal being rewritten). */
export function keepOnInterrupt(output: string, scratch: string): () => void {
  resumable.set(output, scratch);
  return () => resumable.delete(output);
}

/** The outputs an interrupt leaves for --resume to continue. */
export function resumableOutputs(): string[] {
  return [...resumable.keys()];
}

/** The targets being written now, oldest first. */
export function liveTargets(): Target[] {
  return [...live];
}

/**
 * For a signal handler, which may not wait: unlink every temporary file
 * being written (the fds stay valid for whoever still writes into them, and
 * the space is freed when the process exits). Devices are left as they are.
 * Returns the targets that were being written.
 */
export function removeTemporariesSync(): Target[] {
  const targets = liveTargets();
  const paths = [...creating, ...targets.filter((t) => t.kind === 'file').map((t) => t.writePath), ...resumable.values()];
  for (const p of paths) {
    try {
      unlinkSync(p);
    } catch {
      // Already gone (committed or aborted a moment ago), or never made.
    }
  }
  live.clear();
  creating.clear();
  return targets;
}

function ioError(what: string, err: unknown, dir?: string): CosiError {
  return systemError(what, err, { code: 'COSI_ERR_IO', writing: dir !== undefined, dir });
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(`cannot stat ${path}`, err);
  }
}

export async function isBlockDevice(path: string): Promise<boolean> {
  return (await statOrUndefined(path))?.isBlockDevice() ?? false;
}

export async function pathExists(path: string): Promise<boolean> {
  return (await statOrUndefined(path)) !== undefined;
}

export async function isDirectory(path: string): Promise<boolean> {
  return (await statOrUndefined(path))?.isDirectory() ?? false;
}

/** Linux dev_t split, as glibc's major()/minor() do it. */
function devNumbers(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

/** glibc's makedev(), to compare a sysfs "MAJ:MIN" with stat's rdev. */
function makeDev(major: number, minor: number): number {
  const M = BigInt(major);
  const m = BigInt(minor);
  return Number((m & 0xffn) | ((M & 0xfffn) << 8n) | ((m & ~0xffn) << 12n) | ((M & ~0xfffn) << 32n));
}

/** The sysfs directory of a block device (whole disk or partition). */
async function sysDir(rdev: number): Promise<string> {
  const { major, minor } = devNumbers(rdev);
  return realpath(`/sys/dev/block/${major}:${minor}`);
}

async function deviceSize(path: string, rdev: number): Promise<number> {
  try {
    const sectors = Number((await readFile(join(await sysDir(rdev), 'size'), 'utf8')).trim());
    if (Number.isSafeInteger(sectors) && sectors > 0) return sectors * 512;
  } catch {
    // fall through to blockdev
  }
  const { stdout } = await run('blockdev', ['--getsize64', path]);
  return Number(stdout.trim());
}

async function sectorSize(path: string): Promise<number | undefined> {
  try {
    const { stdout } = await run('blockdev', ['--getss', path]);
    const n = Number(stdout.trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface MountEntry {
  source: string;
  mountPoint: string;
}

/**
 * The lines of /proc/self/mounts (fstab format): fields are separated by
 * spaces, and space, tab, newline and backslash inside a field are written as
 * octal escapes (\040, \011, \012, \134).
 */
export function parseMounts(text: string): MountEntry[] {
  const unescape = (f: string) => f.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [source, mountPoint] = line.split(' ');
    if (!source || mountPoint === undefined) continue;
    out.push({ source: unescape(source), mountPoint: unescape(mountPoint) });
  }
  return out;
}

/**
 * A device is busy when it or one of its partitions is mounted, or is held
 * by device-mapper/md (holders). The kernel's own O_EXCL check follows.
 */
export async function deviceInUse(path: string, rdev: number, mountsText?: string): Promise<string | undefined> {
  const targets = new Set<number>([rdev]);
  let dir: string | undefined;
  try {
    dir = await sysDir(rdev);
    for (const name of await readdir(dir)) {
      const devFile = join(dir, name, 'dev');
      const text = await readFile(devFile, 'utf8').catch(() => undefined);
      if (!text) continue;
      const [maj, min] = text.trim().split(':').map(Number);
      targets.add(makeDev(maj!, min!));
      const holders = await readdir(join(dir, name, 'holders')).catch(() => []);
      if (holders.length > 0) return `partition ${name} is in use by ${holders.join(', ')}`;
    }
    const holders = await readdir(join(dir, 'holders')).catch(() => []);
    if (holders.length > 0) return `it is in use by ${holders.join(', ')}`;
  } catch {
    // No sysfs (containers): the mount table and O_EXCL still apply.
  }
  const mounts = mountsText ?? (await readFile('/proc/self/mounts', 'utf8').catch(() => ''));
  for (const { source, mountPoint } of parseMounts(mounts)) {
    if (!source.startsWith('/')) continue;
    const st = await stat(source).catch(() => undefined);
    if (st?.isBlockDevice() && targets.has(st.rdev)) return `${source} is mounted on ${mountPoint}`;
  }
  return undefined;
}

export interface OpenTargetOptions {
  /** Bytes the output needs: a file is truncated to it, a device must be at least this large. */
  size: number;
  /** Refuse a device whose logical sector size differs (whole-disk writes). */
  lbaSize?: number;
  /** A working file of ours, not the user's output (see Target.scratch). */
  scratch?: boolean;
}

export async function openTarget(path: string, opts: OpenTargetOptions): Promise<Target> {
  const st = await statOrUndefined(path);
  if (st?.isBlockDevice()) {
    const busy = await deviceInUse(path, st.rdev);
    if (busy) throw new CosiError('COSI_ERR_DEVICE', `refusing to write ${path}: ${busy}`);
    const size = await deviceSize(path, st.rdev);
    if (size < opts.size) {
      throw new CosiError('COSI_ERR_DEVICE', `${path} is ${size} bytes, smaller than the ${opts.size} bytes needed`);
    }
    const ss = await sectorSize(path);
    if (opts.lbaSize !== undefined && ss !== undefined && ss !== opts.lbaSize) {
      throw new CosiError('COSI_ERR_DEVICE', `${path} has ${ss}-byte sectors, the image's partition table is for ${opts.lbaSize}-byte sectors`);
    }
    let fh: FileHandle;
    try {
      // O_EXCL on a block device: the kernel refuses when it is mounted or claimed.
      fh = await open(path, constants.O_WRONLY | constants.O_EXCL);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EBUSY') throw new CosiError('COSI_ERR_DEVICE', `refusing to write ${path}: the kernel says it is busy (mounted or in use)`);
      throw ioError(`cannot open ${path}`, err);
    }
    const t: Target = { kind: 'device', path, writePath: path, fh, size, sectorSize: ss, behind: new WriteBehind(fh, path) };
    live.add(t);
    return t;
  }
  if (st && !st.isFile()) throw new CosiError('COSI_ERR_USAGE', `${path} is neither a regular file nor a block device`);
  // 'out/' names a directory: without this, the rename onto it would fail only after the whole download.
  if (!st && path.endsWith('/')) throw missingDirectory(`cannot write into ${path}`, path.replace(/(.)\/+$/, '$1'));
  const tmp = join(dirname(path), `.${basename(path)}.cosi-fetch-${randomBytes(4).toString('hex')}.tmp`);
  let fh: FileHandle;
  // Known before it exists: an interrupt from here on removes it.
  creating.add(tmp);
  try {
    fh = await open(tmp, 'wx', 0o644);
  } catch (err) {
    throw ioError(`cannot create ${path}`, err, dirname(path));
  } finally {
    creating.delete(tmp);
  }
  const t: Target = { kind: 'file', path, writePath: tmp, fh, size: opts.size, behind: new WriteBehind(fh, tmp), scratch: opts.scratch, replaces: st?.isFile() === true };
  live.add(t);
  try {
    await fh.truncate(opts.size);
  } catch (err) {
    live.delete(t);
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw ioError(`cannot size ${tmp} to ${opts.size} bytes`, err);
  }
  return t;
}

/** Persist the bytes written so far (ordering point for "primary GPT last"). */
export async function syncTarget(t: Target): Promise<void> {
  await t.behind.settle();
  try {
    await t.fh.sync();
  } catch (err) {
    throw ioError(`cannot flush ${t.path} to disk`, err);
  }
}

/** Everything checked: make the output visible under its name. */
export async function commitTarget(t: Target): Promise<void> {
  await syncTarget(t);
  try {
    await t.fh.close();
  } catch (err) {
    throw ioError(`cannot close ${t.path}`, err);
  }
  if (t.kind !== 'file') live.delete(t);
  if (t.kind === 'file') {
    try {
      await rename(t.writePath, t.path);
    } catch (err) {
      await unlink(t.writePath).catch(() => undefined);
      throw ioError(`cannot rename ${t.writePath} to ${t.path}`, err);
    } finally {
      live.delete(t);
    }
    // The rename itself must reach the disk too.
    const dir = await open(dirname(t.path), 'r').catch(() => undefined);
    await dir?.sync().catch(() => undefined);
    await dir?.close().catch(() => undefined);
  }
}

/** A failure: no temporary file stays behind. A device keeps what was written (it cannot be undone). */
export async function abortTarget(t: Target): Promise<void> {
  await t.behind.idle();
  await t.fh.close().catch(() => undefined);
  if (t.kind === 'file') await unlink(t.writePath).catch(() => undefined);
  live.delete(t);
}

/** Ask the kernel to re-read a device's partition table; a failure is a warning, not an error. */
export async function rereadPartitions(path: string): Promise<string | undefined> {
  try {
    await run('blockdev', ['--rereadpt', path]);
    return undefined;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return `could not make the kernel re-read the partition table of ${path}: ${(e.stderr || e.message).trim().split('\n')[0]}`;
  }
}
