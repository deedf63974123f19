/**
 * cosi-server --workers 2: the real CLI as a cluster (a primary and two worker processes) over
 * loopback: byte-identical ranges, /metrics summed over the workers, the watcher in every
 * worker, a killed worker restarted, SIGTERM draining every worker with no process left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, readFile, rename, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO } from './fixtures.js';
import { fileRange, http, json, run, standardArchives, tempCatalog } from './server-helpers.js';

const CLI = join(REPO, 'dist', 'server', 'cli.js');
const { smallPath, bigPath, big } = await standardArchives();

interface Cluster {
  child: ChildProcess;
  url: string;
  info: Record<string, unknown>;
  /** Every stderr line so far, parsed where it is JSON. */
  lines: () => Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

async function startCluster(root: string, extra: string[] = []): Promise<Cluster> {
  const child = spawn(process.execPath, [CLI, '--root', root, '--port', '0', '--workers', '2', '--rescan', '0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', () => reject(new Error(`server exited: ${stderr}`)));
  });
  const info = JSON.parse(line);
  const lines = () =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { child, url: info.url, info, lines, exited };
}

/** The process ids whose parent is `pid` (the workers of a primary). */
async function childrenOf(pid: number): Promise<number[]> {
  const r = await run('ps', ['--ppid', String(pid), '-o', 'pid=']);
  return r.stdout
    .toString()
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** The sum of a counter's series in Prometheus text. */
function total(text: string, name: string): number {
  let sum = 0;
  for (const l of text.split('\n')) if (l.startsWith(name + '{') || l.startsWith(name + ' ')) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  return sum;
}

describe('cosi-server --workers 2', () => {
  let cat: Awaited<ReturnType<typeof tempCatalog>>;
  let srv: Cluster;
  before(async () => {
    cat = await tempCatalog({ 'big.cosi': bigPath, 'sub/small.cosi': smallPath });
    srv = await startCluster(cat.dir);
  });
  after(async () => {
    srv?.child.kill('SIGKILL');
    await cat?.cleanup();
  });

  test('two worker processes answer byte-identical ranges, each connection its own', async () => {
    assert.equal(srv.info.workers, 2);
    assert.equal(srv.info.images, 2);
    assert.equal((await childrenOf(srv.child.pid!)).length, 2);
    const size = big.length;
    const ranges = [[0, 4095], [512, 4607], [size - 4096, size - 1], [1 << 20, (1 << 20) + (1 << 20) - 1], [12345, 12345 + 65535], [size - 1, size - 1]];
    for (const [a, b] of ranges) {
      // agent: false: a connection per request, so the primary spreads them over both workers.
      const r = await http(srv.url, '/cosi/big.cosi', { headers: { Range: `bytes=${a}-${b}` }, agent: false });
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-range'], `bytes ${a}-${b}/${size}`);
      assert.ok(r.body.equals(await fileRange(bigPath, a!, b! - a! + 1)), `bytes ${a}-${b}`);
    }
    const whole = await http(srv.url, '/cosi/big.cosi', { agent: false });
    assert.ok(whole.body.equals(big));
  });

  test('/metrics counts the requests of every worker', async () => {
    const before = total((await http(srv.url, '/metrics', { agent: false })).body.toString(), 'cosi_http_requests_total');
    const n = 24;
    for (let i = 0; i < n; i++) assert.equal((await http(srv.url, '/healthz', { agent: false })).status, 200);
    const text = (await http(srv.url, '/metrics', { agent: false })).body.toString();
    // The earlier /metrics request is counted too; this one is counted once it has been answered.
    assert.equal(total(text, 'cosi_http_requests_total'), before + 1 + n);
    assert.match(text, /^cosi_workers 2$/m);
    // Catalog-wide gauges are not doubled by the sum.
    assert.match(text, /^cosi_catalog_images\{valid="true"\} 2$/m);
    // Both workers served some of them: the request log names its worker.
    const workers = new Set(srv.lines().filter((l) => l.route === 'healthz').map((l) => l.worker));
    assert.deepEqual([...workers].sort(), [1, 2]);
  });

  test('a file added under the root is seen by every worker', async () => {
    await copyFile(smallPath, join(cat.dir, '.added.tmp'));
    await rename(join(cat.dir, '.added.tmp'), join(cat.dir, 'added.cosi'));
    // Every worker must answer 200 for it: ask on fresh connections until ten in a row do.
    let streak = 0;
    await until('both workers to list added.cosi', async () => {
      const r = await http(srv.url, '/v1/images/added', { agent: false });
      streak = r.status === 200 ? streak + 1 : 0;
      return streak >= 10;
    });
    const answered = new Set(srv.lines().filter((l) => l.id === 'added' && l.status === 200).map((l) => l.worker));
    assert.deepEqual([...answered].sort(), [1, 2]);
    assert.equal(json(await http(srv.url, '/v1/images', { agent: false })).count, 3);
  });

  test('a killed worker is replaced and the server keeps answering', async () => {
    const [victim] = await childrenOf(srv.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await until('the replacement worker', async () => {
      const now = await childrenOf(srv.child.pid!);
      return now.length === 2 && !now.includes(victim!);
    });
    assert.ok(srv.lines().some((l) => l.event === 'worker-exit' && l.pid === victim && l.signal === 'SIGKILL' && l.restarting === true));
    await until('the replacement to listen', async () => /^cosi_workers 2$/m.test((await http(srv.url, '/metrics', { agent: false })).body.toString()));
    for (let i = 0; i < 8; i++) assert.equal((await http(srv.url, '/v1/images/sub/small', { agent: false })).status, 200);
    assert.match((await http(srv.url, '/metrics', { agent: false })).body.toString(), /^cosi_worker_restarts_total 1$/m);
  });
});

test('SIGTERM lets the transfers of every worker finish, exits 0 and leaves no worker behind', async () => {
  const cat = await tempCatalog({ 'big.cosi': bigPath });
  const srv = await startCluster(cat.dir, ['--shutdown-grace', '20', '-q']);
  try {
    const workers = await childrenOf(srv.child.pid!);
    assert.equal(workers.length, 2);
    // Two slow downloads on two connections: the primary gives them to different workers.
    const outs = [0, 1].map((i) => join(cat.dir, `download-${i}`));
    const downloads = outs.map((out) => run('curl', ['-s', '-f', '--limit-rate', '16M', '-o', out, `${srv.url}/cosi/big.cosi`]));
    await until('both downloads to flow', async () => {
      const sizes = await Promise.all(outs.map(async (o) => (await stat(o).catch(() => undefined))?.size ?? 0));
      return sizes.every((s) => s > 0);
    });
    srv.child.kill('SIGTERM');
    for (const [i, d] of downloads.entries()) {
      const res = await d;
      assert.equal(res.code, 0, `curl: ${res.stderr}`);
      assert.ok((await readFile(outs[i]!)).equals(big), `download ${i} finished byte-exact`);
    }
    assert.equal(await srv.exited, 0);
    await until('the workers to be gone', () => workers.every((p) => !alive(p)), 5000);
    const after = await run('curl', ['-s', '-o', '/dev/null', `${srv.url}/healthz`]);
    assert.notEqual(after.code, 0);
  } finally {
    srv.child.kill('SIGKILL');
    await rm(cat.dir, { recursive: true, force: true });
  }
});

test('a second SIGTERM cuts the transfers a paused client holds instead of waiting out the grace', async () => {
  const cat = await tempCatalog({ 'big.cosi': bigPath });
  const srv = await startCluster(cat.dir, ['--shutdown-grace', '60', '-q']);
  try {
    const workers = await childrenOf(srv.child.pid!);
    const u = new URL(srv.url);
    // A client that takes one chunk and then stops reading: its transfer never finishes by itself.
    const ended = new Promise<boolean>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/cosi/big.cosi', agent: false }, (res) => {
        res.once('data', () => {
          res.pause();
          resume = () => res.resume();
          started();
        });
        res.on('error', () => {});
        res.on('close', () => resolve(res.complete));
      });
      req.on('error', reject);
      req.end();
    });
    let started!: () => void;
    let resume!: () => void;
    await new Promise<void>((r) => (started = r));
    srv.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(srv.child.exitCode, null, 'still draining after the first signal');
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exited, 0);
    assert.ok(Date.now() - t0 < 20_000, `exited ${Date.now() - t0} ms after the second signal, not after the 60 s grace`);
    // Read what the server sent before it cut the connection: the body ends short.
    resume();
    assert.equal(await ended, false, 'the paused transfer was cut, not completed');
    await until('the workers to be gone', () => workers.every((p) => !alive(p)), 5000);
  } finally {
    srv.child.kill('SIGKILL');
    await rm(cat.dir, { recursive: true, force: true });
  }
});

test('a startup error in the workers is the one error line and exit code of one process', async () => {
  const r = await run(process.execPath, [CLI, '--root', '/nonexistent/catalog', '--port', '0', '--workers', '2']);
  assert.equal(r.code, 6, r.stderr);
  assert.match(r.stderr.trim(), /^cosi-server: error: cannot read catalog root \/nonexistent\/catalog: no such file or directory; check the path$/);
});

test('--max-connections applies to every worker: two workers admit twice the limit', async () => {
  const cat = await tempCatalog({ 'big.cosi': bigPath });
  const srv = await startCluster(cat.dir, ['--max-connections', '1', '-q']);
  const u = new URL(srv.url);
  const held: Array<{ destroy: () => void }> = [];
  /** A transfer that takes its first chunk and stops reading, so its connection stays open. */
  const hold = () =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/cosi/big.cosi', agent: false }, (res) => {
        res.on('error', () => {});
        if (res.statusCode !== 200) {
          res.resume();
          return resolve(res.statusCode!);
        }
        res.once('data', () => {
          res.pause();
          resolve(200);
        });
      });
      req.on('error', reject);
      held.push({ destroy: () => req.destroy() });
      req.end();
    });
  try {
    // The primary hands connections to the workers in turn: one each, both admitted at once.
    assert.deepEqual([await hold(), await hold()], [200, 200]);
    // Both workers are at their limit now, whichever gets the next connection.
    for (let i = 0; i < 2; i++) {
      const r = await http(srv.url, '/healthz', { agent: false });
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '1');
    }
  } finally {
    for (const h of held) h.destroy();
    srv.child.kill('SIGKILL');
    await rm(cat.dir, { recursive: true, force: true });
  }
});
