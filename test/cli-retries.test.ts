/**
 * Retries out loud: each one on stderr as it happens (`..., retry 1/2 in 0.3 s`),
 * a refused first connection that nothing ever answered fails at once, the
 * full retry policy stays for failures after data flowed, and a library user
 * gets the same events through onEvent (and nothing printed).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { open } from '../client/index.js';
import type { HttpSourceEvent } from '../shared/transport/http/options.js';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { countingSink } from '../client/index.js';
import { startFaultProxy } from './fault-proxy.js';
import { freePort } from './nginx.js';
import { listDir, packThreeBig, runFetch, startCatalogServer } from './client-helpers.js';

let work: string;
let srv: Awaited<ReturnType<typeof startCatalogServer>>;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-retries-'));
  await mkdir(join(work, 'build'));
  const three = await packThreeBig(join(work, 'build'));
  srv = await startCatalogServer({ 'three.cosi': three.cosi });
});
after(async () => {
  await srv.stop();
  await closeSharedAgents();
  await rm(work, { recursive: true, force: true });
});

test('a refused first connection, with nothing ever answering there, fails at once with what to check', async () => {
  const url = `http://127.0.0.1:${await freePort()}/x.cosi`;
  const r = await runFetch(['inspect', url]);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, `no retries: ${r.stderr}`);
  assert.match(r.stderr, /^cosi-fetch: error: GET http:\/\/127\.0\.0\.1:\d+\/x\.cosi: connection refused: nothing answers there; is the server running, and is the host and port right\?\n$/);
});

test('failures after data flowed: every retry shown as it happens, the whole budget used', async () => {
  // The opening read passes; every partition transfer is cut early.
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => ({ kind: 'cut', afterBytes: i === 0 ? 70_000 : 5_000 }));
  try {
    const dir = join(work, 'out1');
    await mkdir(dir);
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--retries', '2', `${proxy.url}/cosi/three.cosi`]);
    assert.equal(r.code, 3, r.stderr);
    const lines = r.stderr.trim().split('\n');
    const retries = lines.filter((l) => /, retry \d\/2 in /.test(l));
    assert.deepEqual(retries.map((l) => /retry (\d)\/2/.exec(l)![1]), ['1', '2'], r.stderr);
    for (const l of retries) assert.match(l, /^cosi-fetch: [a-z].*, retry \d\/2 in \d+(\.\d)?( ms| s) \(http:\/\/127\.0\.0\.1:\d+\/cosi\/three\.cosi\)$/);
    assert.match(lines.at(-1)!, /^cosi-fetch: error: .*gave up after 3 attempts/);
    // -q silences them.
    const q = await runFetch(['-q', '-p', 'root', '-o', join(dir, 'root.img'), '--retries', '1', `${proxy.url}/cosi/three.cosi`]);
    assert.equal(q.code, 3);
    assert.equal(q.stderr.trim().split('\n').length, 1, q.stderr);
  } finally {
    await proxy.stop();
  }
  assert.deepEqual(await listDir(join(work, 'out1')), [], 'nothing left behind');
});

test('library: retry events through onEvent with attempt, budget, delay and reason; nothing printed', async () => {
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => ({ kind: 'cut', afterBytes: i === 0 ? 70_000 : 5_000 }));
  const events: HttpSourceEvent[] = [];
  try {
    const fetchRoot = async () => {
      const img = await open(`${proxy.url}/cosi/three.cosi`, { retries: 2, backoffMs: 20, onEvent: (e) => events.push(e) });
      try {
        await img.pump(img.select('root').image, countingSink());
      } finally {
        await img.close();
      }
    };
    await assert.rejects(fetchRoot(), /gave up after 3 attempts/);
  } finally {
    await proxy.stop();
  }
  const retries = events.filter((e): e is Extract<HttpSourceEvent, { type: 'retry' }> => e.type === 'retry');
  assert.deepEqual(retries.map((e) => [e.attempt, e.retries]), [[1, 2], [2, 2]]);
  for (const e of retries) {
    assert.ok(e.delayMs >= 10 && e.delayMs <= 30 * 2 ** e.attempt, JSON.stringify(e));
    assert.doesNotMatch(e.reason, /^GET /);
    assert.ok(e.error.endsWith(e.reason));
  }
});
