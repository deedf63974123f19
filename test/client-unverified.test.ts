/**
 * Images without a SHA-384. COSI 1.1 and later require one: such an archive
 * is refused (exit 4) by fetch, inspect and verify alike. COSI 1.0 does not:
 * its unhashed images are written only with --allow-unverified, and every
 * report (text and --json; fetch, verify, inspect) names them. Both over a
 * local path and over a server without Range support (the one-pass path),
 * which also holds the archive to the tar rules before committing.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { sameBytes, type PackedFixture } from './fixtures.js';
import { errorLine, layoutOf, listDir, runFetch, runPack, freshDirs } from './client-helpers.js';
import { imageFiles, smallParts, writeParts, type Parts } from './mutants.js';
import { startPlainHttpServer, type RunningServer } from './nginx.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-unverified-'));
const fresh = freshDirs(work);
const www = join(work, 'www');
let fx: PackedFixture;
let rootPath: string;
let v10: string;
let v11: string;
let dup: string;
let plain: RunningServer;

/** SMALL as COSI 1.0 (no disk, compression or bootloader, no GPT image) with the root image's SHA-384 removed. */
function asV10(base: Parts): Parts {
  const p = structuredClone(base);
  const gptPath = p.meta.disk.gptRegions[0].image.path;
  p.meta.version = '1.0';
  delete p.meta.disk;
  delete p.meta.compression;
  delete p.meta.bootloader;
  for (const img of imageFiles(p.meta, rootPath)) delete img.sha384;
  p.images = p.images.filter((m) => m.name !== gptPath);
  return p;
}

before(async () => {
  const small = await smallParts();
  ({ fx, rootPath } = small);
  const base = small.base;
  await mkdir(www);
  v10 = join(www, 'v10.cosi');
  await writeParts(v10, asV10(base));
  const p11 = structuredClone(base);
  for (const img of imageFiles(p11.meta, rootPath)) delete img.sha384;
  v11 = join(www, 'v11.cosi');
  await writeParts(v11, p11);
  const pdup = structuredClone(base);
  pdup.images.push({ name: rootPath, data: Buffer.alloc(pdup.images.find((m) => m.name === rootPath)!.data.length) });
  dup = join(www, 'dup.cosi');
  await writeParts(dup, pdup);
  plain = await startPlainHttpServer(www);
});

after(async () => {
  await plain?.stop();
  await closeSharedAgents();
  await rm(work, { recursive: true, force: true });
});

async function rootPartition() {
  return (await layoutOf(fx.cosi)).parts.find((p) => p.mountPoint === '/')!.gptPartition!;
}

test('the 1.0 archive is valid: cosi-pack validate --deep decodes it and names the image it could not verify', async () => {
  const r = await runPack(['validate', '--deep', '-q', v10]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`valid COSI 1\\.0 .*1 image\\(s\\) without a SHA-384 \\(COSI 1\\.0\\) only decoded and sized: ${rootPath}`));
});

test('COSI 1.0, fetch: an unhashed image is refused (exit 4) before any output, a hashed one is fetched', async () => {
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', dir, v10]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(errorLine(r), new RegExp(`${rootPath} has no SHA-384 \\(COSI 1\\.0 does not require one\\), so its bytes cannot be verified: refusing to use it; pass --allow-unverified`));
  assert.deepEqual(await listDir(dir), []);
  const srv = await runFetch(['-p', 'srv', '-o', dir, v10]);
  assert.equal(srv.code, 0, srv.stderr);
  assert.deepEqual(await listDir(dir), ['srv.img']);
});

test('COSI 1.0, fetch --allow-unverified: written byte-exact, and the text and JSON reports say it was not verified', async () => {
  const gp = await rootPartition();
  const dir = await fresh();
  const text = await runFetch(['-p', 'root', '-o', join(dir, 'a.img'), '--allow-unverified', v10]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stderr, /root: 48\.0 MiB written to .*a\.img \(NOT verified: no SHA-384\)/);
  assert.match(text.stderr, new RegExp(`warning: 1 image has no SHA-384 \\(COSI 1\\.0\\), so only its size and zstd stream were checked, not its bytes: ${rootPath}`));
  assert.ok(await sameBytes(join(dir, 'a.img'), 0, fx.disk, gp.offset, gp.size));

  const json = await runFetch(['-p', 'root', '-p', 'srv', '-o', dir, '--allow-unverified', '--json', v10]);
  assert.equal(json.code, 0, json.stderr);
  const s = JSON.parse(json.stdout);
  assert.deepEqual(s.unverified, [rootPath]);
  assert.deepEqual(s.partitions.map((p: { label: string; verified: boolean }) => [p.label, p.verified]), [['root', false], ['srv', true]]);
  assert.ok(s.warnings.some((w: string) => w.includes(rootPath)));
});

test('COSI 1.0, verify: exit 4 naming the unhashed image unless --allow-unverified; --json says so too', async () => {
  const r = await runFetch(['verify', v10]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(errorLine(r), new RegExp(`NOT VERIFIED: 1 image has no SHA-384 \\(COSI 1\\.0\\), so only its size and zstd stream were checked, not its bytes: ${rootPath}; pass --allow-unverified`));
  assert.doesNotMatch(r.stdout, /every SHA-384/);

  const j = await runFetch(['verify', '--json', v10]);
  assert.equal(j.code, 4);
  const report = JSON.parse(j.stdout);
  assert.equal(report.ok, false);
  assert.deepEqual(report.unverified, [rootPath]);
  assert.equal(report.images.find((i: { path: string }) => i.path === rootPath).verified, false);

  const ok = await runFetch(['verify', '--allow-unverified', v10]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`OK with --allow-unverified \\(3 images; 1 image has no SHA-384 .*: ${rootPath}\\)`));
});

test('COSI 1.0, inspect: the table and --json name the images that cannot be verified', async () => {
  const t = await runFetch(['inspect', v10]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, new RegExp(`NOT VERIFIABLE \\(no SHA-384, COSI 1\\.0\\): ${rootPath}; fetching it needs --allow-unverified`));
  const j = await runFetch(['inspect', '--json', v10]);
  assert.deepEqual(JSON.parse(j.stdout).unverified, [rootPath]);
  const full = await runFetch(['inspect', '--json', fx.cosi]);
  assert.deepEqual(JSON.parse(full.stdout).unverified, []);
});

test('COSI 1.1 and later without a SHA-384: fetch, inspect and verify refuse it (exit 4), --allow-unverified or not', async () => {
  const dir = await fresh();
  for (const args of [['-p', 'srv', '-o', dir], ['-p', 'srv', '-o', dir, '--allow-unverified'], ['inspect'], ['verify', '--allow-unverified']]) {
    const r = await runFetch([...args, v11]);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(errorLine(r), /\.sha384: COSI 1\.2 requires a SHA-384 for every image; without one the bytes cannot be verified: refusing this archive/);
  }
  assert.deepEqual(await listDir(dir), []);
  assert.equal((await runPack(['validate', v11])).code, 5);
});

test('without Range (python http.server): the same refusal and report for 1.0, and a duplicate member refuses the archive before anything is committed', async () => {
  const dir = await fresh();
  const refused = await runFetch(['-p', 'root', '-o', dir, `${plain.url}/v10.cosi`]);
  assert.equal(refused.code, 4, refused.stderr);
  assert.match(errorLine(refused), /has no SHA-384 .*pass --allow-unverified/);
  assert.deepEqual(await listDir(dir), []);

  const ok = await runFetch(['-p', 'root', '-o', dir, '--allow-unverified', '--json', `${plain.url}/v10.cosi`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).unverified, [rootPath]);
  const v = await runFetch(['verify', `${plain.url}/v10.cosi`]);
  assert.equal(v.code, 4, v.stderr);
  assert.match(errorLine(v), /NOT VERIFIED/);

  // The duplicate comes after the real image: the pass reads on to the end, then refuses; the written root goes.
  const dupDir = await fresh();
  const d = await runFetch(['-p', 'root', '-o', dupDir, `${plain.url}/dup.cosi`]);
  assert.equal(d.code, 5, d.stderr);
  assert.match(errorLine(d), /tar\[\d+\] name "images\/partition-2\.raw\.zst" is already used by tar\[\d+\]/);
  assert.deepEqual(await listDir(dupDir), []);
});
