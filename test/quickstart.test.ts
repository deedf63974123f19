/**
 * The README's quick start, as a person on a fresh machine runs it: the real
 * cosi-server with no catalog (it builds the sample), then cosi-fetch
 * against it, then cosi-pack validate on what the server made.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { PACK_CLI, REPO, sh } from './fixtures.js';
import { openReads } from './client-helpers.js';

const FETCH = join(REPO, 'dist', 'client', 'cli.js');
const SERVER = join(REPO, 'dist', 'server', 'cli.js');

async function startCli(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; root: string }> {
  const child = spawn(process.execPath, [SERVER, '--port', '0', '-q'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr += b));
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 60_000);
    lines.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${stderr}`)));
  });
  const ev = JSON.parse(first);
  assert.equal(ev.event, 'listening');
  assert.equal(ev.sample, true);
  return { child, url: ev.url, root: ev.root };
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

describe('README quick start', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cosi-quick-'));
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('cosi-server with no --root serves the sample; cosi-fetch inspects, fetches a partition and the disk', async () => {
    const { child, url, root } = await startCli({ ...process.env, COSI_CACHE_DIR: join(tmp, 'cache') });
    try {
      const image = `${url}/cosi/demo-linux-x86_64.cosi`;
      const inspect = await sh(process.execPath, [FETCH, 'inspect', image]);
      assert.match(inspect, /root\s+\/\s+ext4/);
      assert.match(inspect, /esp\s+\/boot\/efi\s+vfat/);

      const rootImg = join(tmp, 'root.img');
      const summary = JSON.parse(await sh(process.execPath, [FETCH, '--partition', 'root', '-o', rootImg, '--json', image]));
      // The head (metadata, GPT and the first headers), a small read per tar header past it, the partition.
      assert.equal(summary.requests, (await openReads(join(root, 'demo-linux-x86_64.cosi'))) + 1, 'the opening reads, then the partition in one more');
      await sh('e2fsck', ['-f', '-n', rootImg]);
      assert.match(await sh('debugfs', ['-R', 'cat /etc/os-release', rootImg]), /Demo Linux/);

      const disk = join(tmp, 'disk.img');
      await sh(process.execPath, [FETCH, '--disk', '-o', disk, '-q', image]);
      assert.match(await sh('sgdisk', ['-v', disk]), /No problems found/);
      const st = await stat(disk);
      assert.ok(st.blocks * 512 < st.size, 'the disk file is sparse');

      const page = await (await fetch(`${url}/`)).text();
      assert.match(page, /cosi-fetch --partition root/);

      const v = await sh(process.execPath, [PACK_CLI, 'validate', join(root, 'demo-linux-x86_64.cosi')]);
      assert.match(v, /valid COSI 1\.2/);
    } finally {
      await stop(child);
    }
  });
});
