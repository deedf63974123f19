/**
 * cosi-fetch edge cases from its issue that the other client tests do not
 * reach: parallel partitions, a trickling server, retries running out,
 * redirects, mirrors taking over mid-stream, progress on a terminal and as
 * JSON, where -o puts things, and an output file that already exists.
 * Servers: cosi-server in-process, nginx, and the fault proxy in front.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { pythonTarOffsets, sameBytes } from './fixtures.js';
import { startFaultProxy } from './fault-proxy.js';
import { startNginx, type RunningServer } from './nginx.js';
import { errorLine, HEAD_READ, layoutOf, listDir, openReads, packThreeBig, runFetch, runFetchOnTty, scrapeMetric, startCatalogServer, freshDirs, WALK_READ } from './client-helpers.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-edge-'));
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let nginx: RunningServer & { accessLog(): Promise<string> };
// Three ext4 partitions of 4 MiB, each about 1.4 MiB compressed: big enough for
// mid-stream faults, small enough to decode quickly with fzstd on Node 20.
let three: { cosi: string; disk: string };
const fresh = freshDirs(work);

before(async () => {
  await mkdir(join(work, 'build'));
  three = await packThreeBig(join(work, 'build'));
  srv = await startCatalogServer({ 'three.cosi': three.cosi });
  const www = join(work, 'www');
  await mkdir(www);
  await copyFile(three.cosi, join(www, 'three.cosi'));
  nginx = await startNginx(www, {
    extraConfig: [
      'location = /here.cosi { return 302 /three.cosi; }',
      `location = /there.cosi { return 302 ${srv.url}/cosi/three.cosi; }`,
    ].join('\n'),
  });
});

after(async () => {
  await nginx?.stop();
  await srv?.stop();
  await closeSharedAgents();
  await rm(work, { recursive: true, force: true });
});

async function rootOf() {
  return (await layoutOf(three.cosi)).parts.find((p) => p.mountPoint === '/')!;
}

async function checkPartitionFile(out: string, disk: string, p: { gptPartition?: { offset: number; size: number } }): Promise<void> {
  assert.ok(await sameBytes(out, 0, disk, p.gptPartition!.offset, p.gptPartition!.size), out);
}

test('--jobs 3: three large partitions at once, byte-exact, their requests in flight together', async () => {
  const { parts } = await layoutOf(three.cosi);
  assert.ok(parts.every((p) => p.image.compressedSize > 1 << 20), 'every image needs its own request');
  // Connection 0 carries the opening read; the partitions' requests stall on the next two
  // connections. Run one after another, the second could only start once the first had
  // waited out its 1 s stall timeout; at once, both connections open within moments.
  const accepted: number[] = [];
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => {
    accepted.push(performance.now());
    return i === 1 || i === 2 ? { kind: 'stall', afterBytes: 100_000 } : { kind: 'pass' };
  });
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-p', 'srv', '-p', 'var', '-o', dir, '--jobs', '3', '--timeout', '1', '--json', `${proxy.url}/cosi/three.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await listDir(dir), ['root.img', 'srv.img', 'var.img']);
    for (const p of parts) await checkPartitionFile(join(dir, `${p.dpsName}.img`), three.disk, p);
    assert.deepEqual(proxy.applied.slice(1, 3), ['stall', 'stall']);
    assert.ok(accepted[2]! - accepted[1]! < 500, `second partition connection opened ${Math.round(accepted[2]! - accepted[1]!)} ms after the first`);
    // 1 open + 3 partitions + 2 resumes after the stalls.
    assert.ok(JSON.parse(r.stdout).requests >= 6, r.stdout);
  } finally {
    await proxy.stop();
  }
});

test('a trickling server and --timeout 1: the low-speed guard gives up on it within seconds and resumes', async () => {
  const root = await rootOf();
  // One byte every 20 ms never looks idle (1 s), only slow (50 B/s against 1 KiB/s).
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, [{ kind: 'trickle', intervalMs: 20, afterBytes: 100_000 }]);
  try {
    const dir = await fresh();
    const t0 = Date.now();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--timeout', '1', '--json', `${proxy.url}/cosi/three.cosi`], { timeoutMs: 30_000 });
    const secs = (Date.now() - t0) / 1000;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.applied[0], 'trickle');
    assert.ok(proxy.connections >= 2, 'resumed on a new connection');
    assert.ok(secs < 15, `took ${secs} s`);
    await checkPartitionFile(join(dir, 'root.img'), three.disk, root);
  } finally {
    await proxy.stop();
  }
});

test('retries exhausted: exit 3, one line, no output', async () => {
  // The opening read passes; every partition transfer is cut early, and never gets far enough to reset the count.
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => ({ kind: 'cut', afterBytes: i === 0 ? 70_000 : 5_000 }));
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--retries', '2', `${proxy.url}/cosi/three.cosi`]);
    assert.equal(r.code, 3, r.stderr);
    // One error line, after one line per retry as it happened.
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.filter((l) => !/, retry \d\/2 in /.test(l)).length, 1, r.stderr);
    assert.match(errorLine(r), /gave up after 3 attempts/);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await proxy.stop();
  }
});

test('redirects (nginx return 302) to the file, on the same server and to cosi-server', async () => {
  const dir = await fresh();
  const here = await runFetch(['-p', 'root', '-o', join(dir, 'here.img'), `${nginx.url}/here.cosi`]);
  assert.equal(here.code, 0, here.stderr);
  await checkPartitionFile(join(dir, 'here.img'), three.disk, await rootOf());
  const there = await runFetch(['-p', 'root', '-o', join(dir, 'there.img'), '--json', `${nginx.url}/there.cosi`]);
  assert.equal(there.code, 0, there.stderr);
  await checkPartitionFile(join(dir, 'there.img'), three.disk, await rootOf());
  // Each request (the opening reads and the partition's) is a hop plus the target (a 302 is not remembered).
  assert.equal(JSON.parse(there.stdout).requests, 2 * ((await openReads(three.cosi)) + 1));
});

test('--mirror: the primary dies mid-stream, the mirror continues from the same offset', async () => {
  const root = await rootOf();
  const entry = (await pythonTarOffsets(three.cosi)).find((e) => e.name === root.path)!;
  // Primary: cosi-server behind a proxy that cuts the only connection it will ever accept.
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, [{ kind: 'cut', afterBytes: 400_000 }], { maxConnections: 1 });
  try {
    const mark = (await nginx.accessLog()).split('\n').filter(Boolean).length;
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', '--mirror', `${nginx.url}/three.cosi`, `${proxy.url}/cosi/three.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    await checkPartitionFile(join(dir, 'root.img'), three.disk, root);
    const lines = (await nginx.accessLog()).split('\n').filter(Boolean).slice(mark);
    assert.equal(lines.length, 1, lines.join('\n'));
    const m = /^GET \/three\.cosi "bytes=(\d+)-(\d+)" "[^"]*" 206 (\d+)$/.exec(lines[0]!);
    assert.ok(m, lines[0]);
    const [start, end] = [Number(m[1]), Number(m[2])];
    // The mirror served only the rest: from well inside the image to its last byte.
    assert.ok(start > entry.offsetData + 200_000, `mirror asked from ${start}, image data starts at ${entry.offsetData}`);
    assert.equal(end, entry.offsetData + entry.size - 1);
    const s = JSON.parse(r.stdout);
    assert.ok(s.bytesTransferred <= root.image.compressedSize + HEAD_READ + ((await openReads(three.cosi)) - 1) * WALK_READ, `${s.bytesTransferred} bytes`);
  } finally {
    await proxy.stop();
  }
});

test('progress: a bar on a terminal, nothing but the result line when stderr is not one', async () => {
  const dir = await fresh();
  const tty = await runFetchOnTty(['-p', 'root', '-o', join(dir, 'tty.img'), `${srv.url}/cosi/three.cosi`]);
  assert.equal(tty.code, 0, tty.stdout);
  assert.match(tty.stdout, /\x1b\[2K/);
  assert.match(tty.stdout, /root \[#{10,}\] 100% 4\.0 MiB\/4\.0 MiB net [\d.]+ (KiB|MiB) done/);
  assert.match(tty.stdout, /cosi-fetch: root: 4\.0 MiB written to/);

  const quietTty = await runFetchOnTty(['-p', 'root', '-o', join(dir, 'tty2.img'), '--progress', 'none', `${srv.url}/cosi/three.cosi`]);
  assert.equal(quietTty.code, 0, quietTty.stdout);
  assert.doesNotMatch(quietTty.stdout, /\[#|\x1b\[/);

  const piped = await runFetch(['-p', 'root', '-o', join(dir, 'pipe.img'), `${srv.url}/cosi/three.cosi`]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.doesNotMatch(piped.stderr, /\[#|\[-|\x1b\[|%/);
  assert.deepEqual(piped.stderr.trim().split('\n'), [`cosi-fetch: root: 4.0 MiB written to ${join(dir, 'pipe.img')}`]);
  assert.equal(piped.stdout, '');
});

test('--progress=json: one well-formed object per line, per partition from start to done', async () => {
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-p', 'srv', '-p', 'var', '-o', dir, '--jobs', '3', '--progress=json', `${srv.url}/cosi/three.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '', 'progress goes to stderr only');
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const keys = ['bytes', 'compressedBytes', 'compressedTotal', 'elapsed', 'eta', 'event', 'label', 'path', 'rate', 'total'];
  for (const l of lines) {
    assert.deepEqual(Object.keys(l).sort(), keys);
    assert.ok(['start', 'progress', 'done'].includes(l.event), l.event);
    for (const k of ['bytes', 'compressedBytes', 'compressedTotal', 'elapsed', 'rate', 'total']) assert.equal(typeof l[k], 'number', k);
    assert.ok(l.eta === null || typeof l.eta === 'number');
    assert.ok(l.bytes <= l.total && l.compressedBytes <= l.compressedTotal);
  }
  const { parts } = await layoutOf(three.cosi);
  for (const p of parts) {
    const mine = lines.filter((l) => l.path === p.path);
    assert.equal(mine[0].event, 'start');
    assert.equal(mine[0].label, p.dpsName);
    assert.equal(mine.at(-1).event, 'done');
    assert.equal(mine.at(-1).bytes, p.image.uncompressedSize);
    assert.equal(mine.at(-1).compressedBytes, p.image.compressedSize);
    for (let i = 1; i < mine.length; i++) assert.ok(mine[i].bytes >= mine[i - 1].bytes, 'bytes never go back');
  }
  // With --jobs 3 all three start before the first finishes.
  const firstDone = lines.findIndex((l) => l.event === 'done');
  assert.equal(lines.slice(0, firstDone).filter((l) => l.event === 'start').length, 3);
});

test('-o: an existing directory gets default names, a file path is used as is, a missing DIR/ is refused before any download', async () => {
  const url = `${srv.url}/cosi/three.cosi`;
  const root = await rootOf();
  const dir = await fresh();
  const a = await runFetch(['-p', 'root', '-o', dir, url]);
  assert.equal(a.code, 0, a.stderr);
  assert.deepEqual(await listDir(dir), ['root.img']);

  const b = await runFetch(['-p', 'root', '-o', join(dir, 'custom.name'), url]);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(await listDir(dir), ['custom.name', 'root.img']);
  await checkPartitionFile(join(dir, 'custom.name'), three.disk, root);

  // Bug fixed: 'missing/' used to download the whole partition, then fail renaming onto it.
  const before = await scrapeMetric(srv.url, 'cosi_http_requests_total', { route: 'raw', status: '206' });
  const c = await runFetch(['-p', 'root', '-o', join(dir, 'missing') + '/', `${srv.url}/cosi/three.cosi`]);
  assert.equal(c.code, 6, c.stderr);
  assert.match(errorLine(c), /cannot write into .*missing\/: the directory .*missing does not exist; create it first \(mkdir -p .*missing\)$/);
  assert.equal((await scrapeMetric(srv.url, 'cosi_http_requests_total', { route: 'raw', status: '206' })) - before, await openReads(three.cosi), 'only the opening reads');
  assert.deepEqual(await listDir(dir), ['custom.name', 'root.img']);

  const d = await runFetch(['-p', 'root', '-p', 'var', '-o', join(dir, 'custom.name'), url]);
  assert.equal(d.code, 2);
  assert.match(errorLine(d), /several partitions need -o DIR/);
});

test('an existing output file: untouched when the fetch fails, replaced by rename when it succeeds', async () => {
  const root = await rootOf();
  const dir = await fresh();
  const out = join(dir, 'root.img');
  await writeFile(out, 'the previous root image\n');
  const old = await stat(out);

  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => ({ kind: 'cut', afterBytes: i === 0 ? 300_000 : 0 }));
  try {
    const r = await runFetch(['-p', 'root', '-o', out, '--retries', '0', `${proxy.url}/cosi/three.cosi`]);
    assert.equal(r.code, 3, r.stderr);
  } finally {
    await proxy.stop();
  }
  assert.equal(await readFile(out, 'utf8'), 'the previous root image\n');
  assert.equal((await stat(out)).ino, old.ino);
  assert.deepEqual(await listDir(dir), ['root.img'], 'no temporary left');

  const ok = await runFetch(['-p', 'root', '-o', out, `${srv.url}/cosi/three.cosi`]);
  assert.equal(ok.code, 0, ok.stderr);
  await checkPartitionFile(out, three.disk, root);
  // A new inode: the old file was never opened for writing, the finished one took its name.
  assert.notEqual((await stat(out)).ino, old.ino);
  assert.deepEqual(await listDir(dir), ['root.img']);
});
