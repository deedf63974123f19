/**
 * System errors in words: the real bins given a missing directory, a missing
 * file, a directory for a file, a port in use, an address not on this machine,
 * https against a plain-HTTP server. One line, the class's exit code, no bare
 * errno (ENOENT, EISDIR, ...) and no library text; nothing left behind.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { failsWith, FETCH_CLI, runBin } from './client-helpers.js';
import { PACK_CLI, packedDisk, REPO, sh, SMALL, type PackedFixture } from './fixtures.js';

const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');
let work: string;
let small: PackedFixture;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-cli-errors-'));
  small = await packedDisk(SMALL);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const fetch = (args: string[]) => runBin(FETCH_CLI, args, { timeoutMs: 60_000 });
const pack = (args: string[]) => runBin(PACK_CLI, args, { timeoutMs: 60_000 });
const server = (args: string[]) => runBin(SERVER_CLI, args, { timeoutMs: 30_000, env: { COSI_CACHE_DIR: join(work, 'cache') } });

test('cosi-fetch: a missing output directory, a missing file, a directory as the image', async () => {
  const dir = await mkdtemp(join(work, 'fetch-'));
  failsWith(await fetch(['-p', 'root', '-o', join(dir, 'nope', 'root.img'), small.cosi]), 'cosi-fetch', 6, /cannot create .*root\.img: the directory .*nope does not exist; create it first \(mkdir -p /);
  assert.deepEqual(await readdir(dir), [], 'nothing left behind');
  failsWith(await fetch(['inspect', join(dir, 'missing.cosi')]), 'cosi-fetch', 6, /cannot open .*missing\.cosi: no such file or directory/);
  failsWith(await fetch(['inspect', dir]), 'cosi-fetch', 6, /is a directory, not a file/);
});

test('cosi-pack: user mistakes get their class, never exit 1', async () => {
  const dir = await mkdtemp(join(work, 'pack-'));
  failsWith(await pack([small.disk, '-o', join(dir, 'nope', 'x.cosi')]), 'cosi-pack', 6, /the directory .*nope does not exist; create it first/);
  failsWith(await pack([dir, '-o', join(dir, 'x.cosi')]), 'cosi-pack', 6, /is a directory, not a file/);
  failsWith(await pack([join(dir, 'missing.raw'), '-o', join(dir, 'x.cosi')]), 'cosi-pack', 6, /cannot open .*missing\.raw: no such file or directory/);
  failsWith(await pack([small.disk, '-o', dir]), 'cosi-pack', 2, /-o .* is a directory; give the file to write/);
  failsWith(await pack([small.disk, '-o', join(dir, 'x.cosi'), '--os-release', join(dir, 'none')]), 'cosi-pack', 2, /--os-release .*none: no such file or directory/);
  failsWith(await pack(['validate', dir]), 'cosi-pack', 6, /is a directory, not a file/);
  assert.deepEqual(await readdir(dir), [], 'nothing left behind');
});

test('cosi-server: a missing token file, a port in use (another port suggested), an address not on this machine', async () => {
  const root = await mkdtemp(join(work, 'root-'));
  failsWith(await server(['--root', root, '--port', '0', '--token-file', join(root, 'none')]), 'cosi-server', 2, /--token-file .*none: no such file or directory/);
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  const port = (holder.address() as { port: number }).port;
  try {
    failsWith(await server(['--root', root, '--port', String(port)]), 'cosi-server', 6, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: address already in use; .*pick another with --port ${port + 1} \\(--port 0 picks a free one\\)`));
  } finally {
    holder.close();
  }
  // 192.0.2.1 is TEST-NET-1: never an address of this machine.
  failsWith(await server(['--root', root, '--port', '0', '--host', '192.0.2.1']), 'cosi-server', 6, /cannot listen on 192\.0\.2\.1:0: not an address of this machine; use one of .*127\.0\.0\.1/);
});

test('https:// against a plain-HTTP server says it looks like plain HTTP', async () => {
  const plain = createServer((_req, res) => res.end('plain'));
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  const port = (plain.address() as { port: number }).port;
  try {
    failsWith(await fetch(['inspect', `https://127.0.0.1:${port}/x.cosi`]), 'cosi-fetch', 3, /TLS error: the answer looks like plain HTTP, not TLS; use http:\/\/ instead of https:\/\//);
  } finally {
    plain.close();
  }
});

test('cosi-pack validate: a file that is no COSI archive says so, and --json still prints JSON', async () => {
  const text = join(work, 'notes.txt');
  await writeFile(text, 'vm notes: not an archive\n');
  failsWith(await pack(['validate', text]), 'cosi-pack', 5, /notes\.txt is not a COSI archive nor a metadata\.json/);
  const j = await pack(['validate', '--json', text]);
  assert.equal(j.code, 5, j.stderr);
  const report = JSON.parse(j.stdout);
  assert.equal(report.valid, false);
  assert.equal(report.errors[0].rule, 'COSI_ERR_NOT_COSI');
  assert.match(report.errors[0].message, /not a COSI archive/);
  // A metadata.json is still checked as one.
  const meta = join(work, 'metadata.json');
  await writeFile(meta, '{"version": "1.2"}');
  const m = await pack(['validate', '--json', meta]);
  assert.equal(m.code, 5);
  assert.ok(JSON.parse(m.stdout).checks.includes('metadata'));
});

test('cosi-pack --bootloader: a missing file, a directory or bad JSON is one usage line naming the flag', async () => {
  const dir = await mkdtemp(join(work, 'boot-'));
  const out = join(dir, 'x.cosi');
  const takes = "give 'grub' or a JSON file holding the whole bootloader object";
  failsWith(await pack([small.disk, '-o', out, '--bootloader', join(dir, 'nofile.json')]), 'cosi-pack', 2, new RegExp(`^cosi-pack: error: --bootloader .*nofile\\.json: no such file or directory; ${takes}$`));
  const sub = join(dir, 'boot.d');
  await mkdir(sub);
  failsWith(await pack([small.disk, '-o', out, '--bootloader', sub]), 'cosi-pack', 2, new RegExp(`^cosi-pack: error: --bootloader .*boot\\.d: is a directory, not a file; ${takes}$`));
  const bad = join(dir, 'bad.json');
  await writeFile(bad, 'type = grub\n');
  failsWith(await pack([small.disk, '-o', out, '--bootloader', bad]), 'cosi-pack', 2, new RegExp(`^cosi-pack: error: --bootloader .*bad\\.json: not valid JSON \\(.*\\); ${takes}$`));
  assert.deepEqual((await readdir(dir)).sort(), ['bad.json', 'boot.d'], 'nothing written');
});

test('cosi-pack reframe: -o a directory, or into a missing directory, is said before any work, never as a temporary name', async () => {
  const dir = await mkdtemp(join(work, 'reframe-'));
  const intoDir = await pack(['reframe', small.cosi, '-o', dir]);
  failsWith(intoDir, 'cosi-pack', 2, /^cosi-pack: error: -o .*reframe-\w+ is a directory; give the file to write, e\.g\. -o .*image\.cosi \(see cosi-pack reframe --help\)$/);
  assert.doesNotMatch(intoDir.stderr, /decoding/, 'refused before decoding anything');
  const missing = await pack(['reframe', small.cosi, '-o', join(dir, 'nodir', 'r.cosi')]);
  failsWith(missing, 'cosi-pack', 6, /^cosi-pack: error: cannot write .*nodir\/r\.cosi: the directory .*nodir does not exist; create it first \(mkdir -p .*nodir\)$/);
  assert.doesNotMatch(missing.stderr, /\.reframe-|\.partial/);
  assert.deepEqual(await readdir(dir), [], 'nothing left behind');
});

test('cosi-pack validate: a tar that does not start with cosi-marker, or a JSON file that is no metadata.json, is said to be no COSI archive (--json too)', async () => {
  const dir = await mkdtemp(join(work, 'notcosi-'));
  await writeFile(join(dir, 'text.txt'), 'hello\n');
  const tarFile = join(dir, 'some.tar');
  await sh('tar', ['-cf', tarFile, '-C', dir, 'text.txt']);
  const pkg = join(dir, 'package.json');
  await writeFile(pkg, JSON.stringify({ name: 'some-app', version: '0.1.0', scripts: { test: 'node --test' } }, null, 2));
  const cases: Array<[string, RegExp]> = [
    [tarFile, /some\.tar is not a COSI file \(a tar archive whose first entry is text\.txt\): it must start with cosi-marker$/],
    [pkg, /package\.json is not a COSI archive nor a valid COSI metadata\.json \(metadata\.json: images must be an array\): give a \.cosi file or the metadata\.json of one$/],
  ];
  for (const [file, re] of cases) {
    failsWith(await pack(['validate', file]), 'cosi-pack', 5, re);
    const j = await pack(['validate', '--json', file]);
    assert.equal(j.code, 5, j.stderr);
    assert.equal(j.stderr, '');
    const report = JSON.parse(j.stdout);
    assert.equal(report.valid, false);
    assert.equal(report.errors[0].rule, 'COSI_ERR_NOT_COSI');
    assert.match(report.errors[0].message, re);
  }
});
