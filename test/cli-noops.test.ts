/**
 * No silent no-ops: a file as cosi-server's --root, a --mount for a partition
 * the disk lacks, a --shrink that shrinks nothing, and the overwrite rule
 * (an existing output file is replaced, atomically, and the tools say so; an
 * output that is no regular file, or is the input itself, is refused).
 */
import assert from 'node:assert/strict';
import { copyFile, lstat, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FETCH_CLI, runBin } from './client-helpers.js';
import { PACK_CLI, packedDisk, REPO, sh, SMALL, type PackedFixture } from './fixtures.js';

const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');
let work: string;
let small: PackedFixture;
/** A GPT disk whose one partition holds no filesystem: nothing for --shrink to shrink. */
let bare: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-noops-'));
  small = await packedDisk(SMALL);
  bare = join(work, 'bare.raw');
  await writeFile(bare, '');
  await truncate(bare, 4 << 20);
  await sh('sgdisk', ['-n', '1:2048:+1M', '-t', '1:8300', bare]);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('cosi-server --root FILE is refused with the directory to give instead', async () => {
  const r = await runBin(SERVER_CLI, ['--root', small.cosi, '--port', '0'], { timeoutMs: 30_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, '', 'never listening');
  assert.match(r.stderr, /^cosi-server: error: --root .*small\.cosi is a file, not a directory: give the directory that holds it \(--root .*\), which serves every \.cosi file in it\n$/);
});

test('cosi-pack --mount for a partition the disk lacks is a usage error naming the partitions it has', async () => {
  const out = join(work, 'm.cosi');
  const r = await runBin(PACK_CLI, [bare, '-o', out, '-q', '--os-release', '/etc/os-release', '--mount', '9=/data']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^cosi-pack: error: --mount 9=\/data: .*bare\.raw has no partition 9; it has 1 \(linux-generic\)\n$/);
  const byType = await runBin(PACK_CLI, [bare, '-o', out, '-q', '--os-release', '/etc/os-release', '--mount', 'srv=/data']);
  assert.equal(byType.code, 2, byType.stderr);
  assert.match(byType.stderr, /--mount srv=\/data: .* has no partition of type srv; it has 1/);
  await assert.rejects(stat(out), 'nothing written');
});

test('cosi-pack --shrink that shrinks nothing says why, even with -q', async () => {
  const out = join(work, 's.cosi');
  const r = await runBin(PACK_CLI, [bare, '-o', out, '-q', '--os-release', '/etc/os-release', '--shrink']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^cosi-pack: warning: --shrink shrank nothing: partition 1 \(\w+, not ext2\/3\/4\)\n$/);
});

test('an existing output file is replaced, and both writers say so', async () => {
  const out = join(work, 'twice.cosi');
  const first = await runBin(PACK_CLI, [bare, '-o', out, '--os-release', '/etc/os-release']);
  assert.equal(first.code, 0, first.stderr);
  assert.doesNotMatch(first.stderr, /replaced/);
  const second = await runBin(PACK_CLI, [bare, '-o', out, '--os-release', '/etc/os-release']);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /cosi-pack: wrote .*twice\.cosi \(\d+ bytes, \d+ regions; replaced the file that was there\)/);

  const reframed = join(work, 'reframed.cosi');
  const r1 = await runBin(PACK_CLI, ['reframe', out, '-o', reframed]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stderr, /cosi-pack: wrote .*reframed\.cosi \(\d+ bytes, \d+ images\)\n$/);
  const r2 = await runBin(PACK_CLI, ['reframe', out, '-o', reframed]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /cosi-pack: wrote .*reframed\.cosi \(\d+ bytes, \d+ images; replaced the file that was there\)\n$/);

  const img = join(work, 'root.img');
  await writeFile(img, 'old contents');
  const f = await runBin(FETCH_CLI, ['-p', 'root', '-o', img, small.cosi]);
  assert.equal(f.code, 0, f.stderr);
  assert.match(f.stderr, /cosi-fetch: root: .* written to .*root\.img \(replaced the file that was there\)/);
  assert.notEqual((await readFile(img, 'latin1')).slice(0, 12), 'old contents');
  const j = await runBin(FETCH_CLI, ['-p', 'root', '-o', img, '--json', small.cosi]);
  assert.equal(JSON.parse(j.stdout).partitions[0].replaced, true);
});

test('cosi-pack and reframe refuse, before any work, an output that is no regular file or that is the input itself', async () => {
  const dir = await mkdtemp(join(work, 'rules-'));
  // A FIFO stands in for any file that is not a regular one (never a real device node in a test).
  const fifo = join(dir, 'pipe');
  await sh('mkfifo', [fifo]);
  const viaLink = join(dir, 'link.cosi');
  await symlink(fifo, viaLink);
  for (const out of [fifo, viaLink]) {
    const p = await runBin(PACK_CLI, [bare, '-o', out, '--os-release', '/etc/os-release']);
    assert.equal(p.code, 2, p.stderr);
    assert.match(p.stderr, /^cosi-pack: error: -o \S+ is a named pipe \(FIFO\); give the path of a regular file to write .*\(see cosi-pack --help\)\n$/);
    const r = await runBin(PACK_CLI, ['reframe', small.cosi, '-o', out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^cosi-pack: error: -o \S+ is a named pipe \(FIFO\); .*\(see cosi-pack reframe --help\)\n$/);
  }
  assert.ok((await lstat(fifo)).isFIFO(), 'the FIFO is still a FIFO');
  assert.ok((await lstat(viaLink)).isSymbolicLink(), 'the link is still a link');

  // The input itself, by its own path and through a symbolic link.
  const disk = join(dir, 'disk.raw');
  await copyFile(bare, disk);
  const diskAlias = join(dir, 'alias.raw');
  await symlink(disk, diskAlias);
  const cosi = join(dir, 'in.cosi');
  await copyFile(small.cosi, cosi);
  const cosiAlias = join(dir, 'alias.cosi');
  await symlink(cosi, cosiAlias);
  const before = { disk: await readFile(disk), cosi: await readFile(cosi) };
  for (const out of [disk, diskAlias]) {
    const p = await runBin(PACK_CLI, [disk, '-o', out, '--os-release', '/etc/os-release']);
    assert.equal(p.code, 2, p.stderr);
    assert.match(p.stderr, /^cosi-pack: error: -o \S+ is the input DISK itself; write to another path \(see cosi-pack --help\)\n$/);
  }
  for (const out of [cosi, cosiAlias]) {
    const r = await runBin(PACK_CLI, ['reframe', cosi, '-o', out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^cosi-pack: error: -o \S+ is the input IN\.cosi itself; write to another path \(see cosi-pack reframe --help\)\n$/);
  }
  assert.ok((await readFile(disk)).equals(before.disk), 'the disk is untouched');
  assert.ok((await readFile(cosi)).equals(before.cosi), 'the archive is untouched');
  assert.deepEqual((await readdir(dir)).sort(), ['alias.cosi', 'alias.raw', 'disk.raw', 'in.cosi', 'link.cosi', 'pipe'], 'nothing left behind');
});
