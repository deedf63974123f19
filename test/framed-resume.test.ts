/**
 * cosi-fetch --resume over real HTTP (cosi-server on 127.0.0.1 behind the
 * fault proxy): a fetch stalled halfway and killed with SIGKILL leaves its
 * partial output and journal; the same command again continues from the
 * journaled frame, fetching none of the bytes before it, and writes the
 * partition's exact bytes. A journal for another archive starts over; SIGINT
 * without --resume leaves nothing, as before.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FETCH_CLI, freshDirs, runFetch, startCatalogServer } from './client-helpers.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { FILLED, packedDisk, type PackedFixture } from './fixtures.js';
import { readDiskGpt } from '../shared/pack/pack.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-framed-resume-'));
const fresh = freshDirs(work);
let framed: PackedFixture;
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let proxy: FaultProxy;
let stallAfter: number | undefined;
let rootSha: string;
let url: string;

before(async () => {
  framed = await packedDisk(FILLED, ['--frame-size', '1M']);
  srv = await startCatalogServer({ 'framed.cosi': framed.cosi });
  const port = Number(new URL(srv.url).port);
  proxy = await startFaultProxy({ host: '127.0.0.1', port }, () => (stallAfter === undefined ? { kind: 'pass' } : { kind: 'stall', afterBytes: stallAfter }), { maxConnections: 200 });
  url = `${proxy.url}/cosi/framed.cosi`;
  const { gpt } = await readDiskGpt(framed.disk);
  const root = gpt.partitions.find((p) => p.number === 2)!;
  const disk = await readFile(framed.disk);
  rootSha = createHash('sha256').update(disk.subarray(root.offset, root.offset + root.size)).digest('hex');
});
after(async () => {
  await proxy?.stop();
  await srv?.stop();
  await rm(work, { recursive: true, force: true });
});

const sha256 = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

interface Journal {
  done: number;
  metadataSha384: string;
}

async function journalOf(dir: string): Promise<Journal | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, '.root.img.cosi-journal.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Runs cosi-fetch until its journal has stopped moving past `minDone` entries (the transfer is stalled), then SIGKILL. */
async function killMidway(args: string[], dir: string, minDone: number): Promise<Journal> {
  const child = spawn(process.execPath, [FETCH_CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    let last = -1;
    let still = 0;
    for (let i = 0; i < 300; i++) {
      await sleep(100);
      const j = await journalOf(dir);
      if (j && j.done >= minDone && j.done === last) still++;
      else still = 0;
      last = j?.done ?? -1;
      if (still >= 10) break;
    }
    assert.ok(last >= minDone, `the journal reached ${minDone} entries before the stall (got ${last}; ${stderr})`);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  return (await journalOf(dir))!;
}

test('kill -9 halfway, then the same command: continues from the journaled frame and re-fetches nothing before it', async () => {
  // A clean run first: what the whole fetch costs, and where the image's bytes are.
  const cleanDir = await fresh();
  const clean = await runFetch(['--partition', 'root', '-o', join(cleanDir, 'root.img'), '--json', '-q', url]);
  assert.equal(clean.code, 0, clean.stderr);
  const cleanJson = JSON.parse(clean.stdout);
  const compressed: number = cleanJson.partitions[0].compressedSize;
  const overhead = cleanJson.bytesTransferred - compressed;

  const dir = await fresh();
  const args = ['--partition', 'root', '-o', join(dir, 'root.img'), '--resume', '--threads', '2', '--json', '-q', url];
  stallAfter = overhead + Math.floor(compressed / 2);
  const connectionsBefore = proxy.connections;
  let journal: Journal;
  try {
    journal = await killMidway(args, dir, 2);
  } finally {
    stallAfter = undefined;
  }
  const left = (await readdir(dir)).sort();
  assert.deepEqual(left, ['.root.img.cosi-journal.json', '.root.img.cosi-partial'], 'partial output and journal kept, nothing under the final name');
  assert.equal(proxy.connections - connectionsBefore, 1, 'the first run used one connection, so it received exactly the stall budget');

  const again = await runFetch(args);
  assert.equal(again.code, 0, again.stderr);
  const r = JSON.parse(again.stdout);
  const part = r.partitions[0];
  assert.equal(part.resumedFrom, journal.done);
  assert.equal(await sha256(join(dir, 'root.img')), rootSha);
  assert.deepEqual(await readdir(dir), ['root.img'], 'journal and partial gone once committed');
  // Compressed bytes before the journaled frame are never asked for again.
  const parts = await import('./mutants.js').then((m) => m.readParts(framed.cosi));
  const entry = parts.images.find((i) => i.name === part.path)!.data;
  let prefix = 0;
  const count = entry.readUInt32LE(entry.length - 9);
  const tableAt = entry.length - (8 + count * 8 + 9);
  for (let i = 0; i < journal.done; i++) prefix += entry.readUInt32LE(tableAt + 8 + i * 8);
  // Every frame whose bytes all arrived before the stall is journaled, whichever lane had it: the
  // zstd program once kept a frame's last KiB in its stdio buffer while its lane waited for input.
  let whole = 0;
  for (let i = 0, end = 0; i < count; i++) {
    end += entry.readUInt32LE(tableAt + 8 + i * 8);
    if (end <= Math.floor(compressed / 2) - 8192) whole = end;
  }
  assert.ok(prefix >= whole, `journal at ${prefix} B, yet the frames up to ${whole} B had arrived whole before the stall`);
  assert.ok(r.bytesTransferred <= overhead + (compressed - prefix) + 2048, `second run: ${r.bytesTransferred} bytes, at most the open (${overhead}) and the ${compressed - prefix} bytes after the journaled prefix`);
  // Re-fetched: what both runs took beyond one clean run (the first run received exactly the stall budget).
  const refetched = overhead + Math.floor(compressed / 2) + r.bytesTransferred - cleanJson.bytesTransferred;
  process.stdout.write(`# resume: image ${compressed} B, stalled and killed at ${Math.floor(compressed / 2)} B, journal at entry ${journal.done} (${prefix} B); second run ${r.bytesTransferred} B; re-fetched ${refetched} B (the open, ${overhead} B, and ${Math.floor(compressed / 2) - prefix} B past the journal)\n`);
});

test('a journal for another archive is not continued: the fetch starts over and says so', async () => {
  const dir = await fresh();
  const args = ['--partition', 'root', '-o', join(dir, 'root.img'), '--resume', '--json', url];
  stallAfter = 200_000;
  try {
    await killMidway(args, dir, 1);
  } finally {
    stallAfter = undefined;
  }
  const jpath = join(dir, '.root.img.cosi-journal.json');
  const j = JSON.parse(await readFile(jpath, 'utf8'));
  j.metadataSha384 = '0'.repeat(96);
  await writeFile(jpath, JSON.stringify(j));
  const r = await runFetch(args);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).partitions[0].resumedFrom, 0);
  assert.match(r.stderr, /saved partial output is for another version .*starting over/);
  assert.equal(await sha256(join(dir, 'root.img')), rootSha);
  assert.deepEqual(await readdir(dir), ['root.img']);
});

test('without --resume an interrupt leaves nothing, as before', async () => {
  const dir = await fresh();
  stallAfter = 200_000;
  const child = spawn(process.execPath, [FETCH_CLI, '--partition', 'root', '-o', join(dir, 'root.img'), '-q', url], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    for (let i = 0; i < 100 && (await readdir(dir)).length === 0; i++) await sleep(100);
    await sleep(500);
    child.kill('SIGINT');
    assert.equal(await exited, 130);
  } finally {
    stallAfter = undefined;
    child.kill('SIGKILL');
  }
  assert.deepEqual(await readdir(dir), []);
});

test('SIGINT with --resume keeps the partial output and its journal, and says so', async () => {
  const dir = await fresh();
  stallAfter = 200_000;
  const child = spawn(process.execPath, [FETCH_CLI, '--partition', 'root', '-o', join(dir, 'root.img'), '--resume', '-q', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    for (let i = 0; i < 100 && !(await journalOf(dir)); i++) await sleep(100);
    child.kill('SIGINT');
    assert.equal(await exited, 130);
  } finally {
    stallAfter = undefined;
    child.kill('SIGKILL');
  }
  assert.match(stderr, /interrupted by SIGINT .*the partial .*root\.img was kept: run the same command again to continue/);
  assert.deepEqual((await readdir(dir)).sort(), ['.root.img.cosi-journal.json', '.root.img.cosi-partial']);
  const r = await runFetch(['--partition', 'root', '-o', join(dir, 'root.img'), '--resume', '--json', '-q', url]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout).partitions[0].resumedFrom > 0);
  assert.equal(await sha256(join(dir, 'root.img')), rootSha);
});

test('--resume refuses --disk', async () => {
  const r = await runFetch(['--disk', '-o', join(await fresh(), 'd.img'), '--resume', url]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--resume works with --partition/);
});
