/**
 * Interrupts: SIGINT, SIGTERM and SIGHUP sent to the real cosi-fetch while
 * a partition or a whole disk is being written from a slow server
 * (cosi-server behind the fault proxy, trickling once the archive is
 * opened). Each must remove the temporary output, print one line saying
 * what was interrupted, and exit 128 + the signal's number.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFaultProxy } from './fault-proxy.js';
import { FETCH_CLI, freshDirs, listDir, openReads, packThreeBig, startCatalogServer } from './client-helpers.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-interrupt-'));
const fresh = freshDirs(work);
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
/** Bytes the first connection carries at full speed: the opening reads (head and tar walk) and then some. */
let opening: number;

before(async () => {
  await mkdir(join(work, 'build'));
  const three = await packThreeBig(join(work, 'build'));
  srv = await startCatalogServer({ 'three.cosi': three.cosi });
  opening = (await openReads(three.cosi)) * (64 << 10) + 50_000;
});

after(async () => {
  await srv?.stop();
  await rm(work, { recursive: true, force: true });
});

/**
 * A slow server for one run: the opening at full speed, then one byte every 5 ms on every
 * connection, slow enough to stay mid-transfer, never slow enough for the low-speed guard (60 s).
 */
async function slowServer<T>(body: (url: string) => Promise<T>): Promise<T> {
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => ({ kind: 'trickle', intervalMs: 5, afterBytes: i === 0 ? opening : 20_000 }));
  try {
    return await body(`${proxy.url}/cosi/three.cosi`);
  } finally {
    await proxy.stop();
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Starts cosi-fetch, waits until a temporary output exists in `dir` (or `ready` says so), sends `signal`. */
async function interrupt(args: string[], dir: string, signal: NodeJS.Signals, ready?: () => Promise<boolean>): Promise<Exit & { seen: string[] }> {
  const child = spawn(process.execPath, [FETCH_CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, sig) => resolve({ code, signal: sig, stderr })));
  let seen: string[] = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    seen = await readdir(dir);
    if (ready ? await ready() : seen.some((n) => n.endsWith('.tmp'))) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      assert.fail(`cosi-fetch never got mid-transfer (files: ${seen.join(', ')}): ${stderr}`);
    }
    await sleep(50);
  }
  // Well inside the transfer: some bytes written, most still trickling in.
  await sleep(300);
  child.kill(signal);
  return { ...(await exited), seen };
}

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
];

for (const [signal, code] of SIGNALS) {
  test(`${signal} during --partition: the temporary file is removed, one line, exit ${code}`, () => slowServer(async (url) => {
    const dir = await fresh();
    const out = join(dir, 'root.img');
    const r = await interrupt(['-p', 'root', '-o', out, url], dir, signal);
    assert.ok(r.seen.some((n) => /^\.root\.img\.cosi-fetch-[0-9a-f]{8}\.tmp$/.test(n)), `mid-transfer: ${r.seen.join(', ')}`);
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stderr, `cosi-fetch: interrupted by ${signal} during the fetch of ${url}: the partial ${out} was removed\n`);
    assert.deepEqual(await listDir(dir), []);
  }));

  test(`${signal} during --disk: the temporary disk file is removed, one line, exit ${code}`, () => slowServer(async (url) => {
    const dir = await fresh();
    const out = join(dir, 'disk.img');
    const r = await interrupt(['--disk', '-o', out, '--jobs', '3', url], dir, signal);
    assert.ok(r.seen.some((n) => /^\.disk\.img\.cosi-fetch-[0-9a-f]{8}\.tmp$/.test(n)), `mid-transfer: ${r.seen.join(', ')}`);
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stderr, `cosi-fetch: interrupted by ${signal} during the fetch of ${url}: the partial ${out} was removed\n`);
    assert.deepEqual(await listDir(dir), []);
  }));
}

test('SIGINT during verify: nothing to remove, and the line says so', () => slowServer(async (url) => {
  const dir = await fresh();
  const started = Date.now();
  const r = await interrupt(['verify', url], dir, 'SIGINT', async () => Date.now() - started > 1500);
  assert.equal(r.code, 130, r.stderr);
  assert.equal(r.stderr, `cosi-fetch: interrupted by SIGINT during the verify of ${url}: no output had been opened\n`);
}));
