/**
 * cosi-fetch writing to block devices, on loop devices over files filled
 * with a non-zero pattern (so a skipped write shows): the whole disk and one
 * partition written in place, a device too small, a mounted device and a
 * device with a mounted partition refused. Needs root and working loop
 * devices (and mount for the mounted cases); skipped otherwise. The mount
 * table parser runs everywhere.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open as fsOpen, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { deviceInUse, parseMounts } from '../client/output.js';
import { packedDisk, sh, SHRINKABLE, SMALL, sameBytes } from './fixtures.js';
import { checkDisk, errorLine, layoutOf, runFetch } from './client-helpers.js';

const exec = promisify(execFile);
const MiB = 1 << 20;
const PATTERN = 0xa5;

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-device-'));
const loops: string[] = [];
const mounts: string[] = [];

after(async () => {
  for (const m of mounts.reverse()) await sh('umount', [m]).catch(() => undefined);
  for (const l of loops) await sh('losetup', ['-d', l]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

/** Why loop-device tests cannot run here, or undefined when they can. */
async function loopUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root';
  const probe = join(work, 'probe.img');
  try {
    await sh('truncate', ['-s', '1M', probe]);
    const dev = (await sh('losetup', ['--find', '--show', probe])).trim();
    await sh('losetup', ['-d', dev]);
    return undefined;
  } catch (err) {
    return `no usable loop device (${(err as Error).message.split('\n')[0]})`;
  } finally {
    await rm(probe, { force: true });
  }
}
const skipLoop = await loopUnavailable();

/** A backing file of `bytes` filled with PATTERN, attached as a loop device (with partition scanning). */
async function patternLoop(name: string, bytes: number): Promise<string> {
  const file = join(work, name);
  const fh = await fsOpen(file, 'w');
  const chunk = Buffer.alloc(MiB, PATTERN);
  for (let at = 0; at < bytes; at += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, bytes - at), at);
  await fh.close();
  const dev = (await sh('losetup', ['--find', '--show', '--partscan', file])).trim();
  loops.push(dev);
  return dev;
}

async function allPattern(dev: string, offset: number, length: number): Promise<boolean> {
  const fh = await fsOpen(dev, 'r');
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, offset);
    return b.every((x) => x === PATTERN);
  } finally {
    await fh.close();
  }
}

async function tryMount(dev: string): Promise<string | undefined> {
  const dir = join(work, `mnt-${basename(dev)}`);
  await mkdir(dir, { recursive: true });
  try {
    await exec('mount', [dev, dir]);
    mounts.push(dir);
    return dir;
  } catch {
    return undefined;
  }
}

test('parseMounts decodes the octal escapes of /proc/self/mounts', () => {
  const text = [
    'proc /proc proc rw,nosuid 0 0',
    '/dev/sda2 / ext4 rw,relatime 0 0',
    '/dev/sdb1 /media/usb\\040stick vfat rw 0 0',
    '/dev/mapper/a\\134b /srv/tab\\011here xfs rw 0 0',
    '',
  ].join('\n');
  assert.deepEqual(parseMounts(text), [
    { source: 'proc', mountPoint: '/proc' },
    { source: '/dev/sda2', mountPoint: '/' },
    { source: '/dev/sdb1', mountPoint: '/media/usb stick' },
    { source: '/dev/mapper/a\\b', mountPoint: '/srv/tab\there' },
  ]);
});

test('--disk to a loop device of exactly disk.size: every byte written, sgdisk -v passes', { skip: skipLoop }, async () => {
  const fx = await packedDisk(SMALL);
  const { disk, parts } = await layoutOf(fx.cosi);
  const dev = await patternLoop('disk.img', disk.size);
  const r = await runFetch(['--disk', '-o', dev, '--verify-after', '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.outputKind, 'device');
  assert.equal(s.targetSize, disk.size);
  // Byte-identical regions, zeros included: a sparse skip on a device would leave the pattern.
  await checkDisk(fx, dev);
  // The re-read was asked for and accepted. Whether the kernel then lists the partitions depends on
  // its GPT support (this machine's kernel has none: only partx, parsing in user space, adds them).
  assert.deepEqual(s.warnings, [], 'blockdev --rereadpt accepted');
  const table = await sh('partx', ['-g', '-o', 'NR,START,SECTORS', dev]);
  assert.deepEqual(
    table.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)),
    parts.map((p) => [p.number, p.gptPartition!.offset / 512, p.gptPartition!.size / 512]),
  );
});

test('one partition to a loop device, written in place', { skip: skipLoop }, async () => {
  const fx = await packedDisk(SMALL);
  const root = (await layoutOf(fx.cosi)).parts.find((p) => p.mountPoint === '/')!;
  // One MiB larger than the image: the tail past the image is left alone.
  const dev = await patternLoop('part.img', root.image.uncompressedSize + MiB);
  const r = await runFetch(['-p', 'root', '-o', dev, '--verify-after', '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).partitions[0].outputKind, 'device');
  assert.ok(await sameBytes(dev, 0, fx.disk, root.gptPartition!.offset, root.image.uncompressedSize));
  assert.ok(await allPattern(dev, root.image.uncompressedSize, MiB));
  await sh('e2fsck', ['-fn', dev]);
});

test('a device smaller than the disk is refused before anything is written', { skip: skipLoop }, async () => {
  const fx = await packedDisk(SMALL);
  const { disk } = await layoutOf(fx.cosi);
  const dev = await patternLoop('short.img', disk.size - 4 * MiB);
  const r = await runFetch(['--disk', '-o', dev, fx.cosi]);
  assert.equal(r.code, 6, r.stderr);
  assert.match(errorLine(r), /smaller than the \d+ bytes needed/);
  assert.ok(await allPattern(dev, 0, MiB));
  assert.equal((await stat(dev)).isBlockDevice(), true);
});

test('a mounted device, or a device with a mounted partition, is refused', { skip: skipLoop }, async (t) => {
  const fx = await packedDisk(SMALL);
  const { disk } = await layoutOf(fx.cosi);

  // The whole device mounted.
  const whole = await patternLoop('mounted.img', disk.size);
  await sh('mkfs.ext4', ['-q', '-F', whole]);
  const mnt = await tryMount(whole);
  if (!mnt) return t.skip('mount is not permitted here');
  const a = await runFetch(['--disk', '-o', whole, fx.cosi]);
  assert.equal(a.code, 6, a.stderr);
  assert.match(errorLine(a), new RegExp(`refusing to write ${whole}: ${whole} is mounted on ${mnt}`));
  const b = await runFetch(['-p', 'root', '-o', whole, fx.cosi]);
  assert.equal(b.code, 6, b.stderr);
  assert.match(errorLine(b), /is mounted on/);

  // A partition of the device mounted (the disk written by cosi-fetch itself, root mounted).
  const parted = await patternLoop('parted.img', disk.size);
  const w = await runFetch(['--disk', '-o', parted, fx.cosi]);
  assert.equal(w.code, 0, w.stderr);
  const p2 = `${parted}p2`;
  // Partition nodes, whether or not the kernel parses GPT itself (see above).
  if (!existsSync(p2)) await sh('partx', ['-a', parted]);
  assert.ok(existsSync(p2), `${p2} exists`);
  // The string form of the check, with a mount table that only says so.
  const st = await stat(parted);
  assert.equal(await deviceInUse(parted, st.rdev, `/dev/loop-none /x ext4 rw 0 0\n${p2} /a\\040b ext4 rw 0 0\n`), `${p2} is mounted on /a b`);
  assert.equal(await deviceInUse(parted, st.rdev, 'proc /proc proc rw 0 0\n'), undefined);
  const rootMnt = await tryMount(p2);
  assert.ok(rootMnt, `mount ${p2}`);
  assert.equal(await sh('cat', [join(rootMnt, 'etc/hostname')]), 'fixture\n');
  const c = await runFetch(['--disk', '-o', parted, fx.cosi]);
  assert.equal(c.code, 6, c.stderr);
  assert.match(errorLine(c), new RegExp(`${p2} is mounted on ${rootMnt}`));
});

test('--grow on a device, one partition or the whole disk, grows in place (bug: e2fsck met our own exclusive open)', { skip: skipLoop }, async () => {
  const fx = await packedDisk(SHRINKABLE, ['--shrink']);
  const { disk, parts } = await layoutOf(fx.cosi);
  const shrunk = parts.filter((p) => p.shrunk);
  assert.ok(shrunk.length > 0);
  const dev = await patternLoop('grow.img', disk.size);
  const r = await runFetch(['--disk', '-o', dev, '--grow', '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.deepEqual(s.shrunk.map((x: { number: number; grown: boolean }) => [x.number, x.grown]), shrunk.map((p) => [p.number, true]));
  await sh('sgdisk', ['-v', dev]);
  for (const p of shrunk) {
    const at = `${dev}?offset=${p.gptPartition!.offset}`;
    await sh('e2fsck', ['-fn', at]);
    const info = await sh('dumpe2fs', ['-h', at]);
    assert.equal(Number(/Block count:\s+(\d+)/.exec(info)![1]) * Number(/Block size:\s+(\d+)/.exec(info)![1]), p.gptPartition!.size, p.path);
  }
  for (const p of parts.filter((q) => !q.shrunk)) {
    assert.ok(await sameBytes(dev, p.gptPartition!.offset, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), p.path);
  }

  // One partition to a device of its partition's size: grown to the device.
  const root = shrunk.find((p) => p.mountPoint === '/')!;
  const one = await patternLoop('grow-root.img', root.gptPartition!.size);
  const g = await runFetch(['-p', 'root', '-o', one, '--grow', '--json', fx.cosi]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).partitions[0].grown, true);
  await sh('e2fsck', ['-fn', one]);
  const info = await sh('dumpe2fs', ['-h', one]);
  assert.equal(Number(/Block count:\s+(\d+)/.exec(info)![1]) * Number(/Block size:\s+(\d+)/.exec(info)![1]), root.gptPartition!.size);
});
