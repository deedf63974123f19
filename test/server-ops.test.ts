/**
 * cosi-server as an operator meets it: the real CLI process (port 0, the
 * JSON line, environment variables, SIGTERM while a transfer runs), files
 * replaced under a running server, corrupt images, tokens and limits.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pythonTarOffsets, REPO } from './fixtures.js';
import { http, json, run, tempCatalog, standardArchives } from './server-helpers.js';
import { startServer } from '../server/server.js';

const sha384 = (b: Buffer) => createHash('sha384').update(b).digest('hex');
const CLI = join(REPO, 'dist', 'server', 'cli.js');

const { smallPath, small4kPath, bigPath, small, small4k, big } = await standardArchives();

/** Start a GET and hand back the response paused after its first chunk. */
function startSlow(base: string, path: string, headers: Record<string, string> = {}) {
  const u = new URL(base);
  return new Promise<{ status: number; headers: Record<string, unknown>; finish: () => Promise<{ body: Buffer; complete: boolean }> }>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let ended: ((v: { body: Buffer; complete: boolean }) => void) | undefined;
      const done = new Promise<{ body: Buffer; complete: boolean }>((r) => (ended = r));
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ended!({ body: Buffer.concat(chunks), complete: res.complete }));
      res.on('error', () => ended!({ body: Buffer.concat(chunks), complete: false }));
      res.once('data', () => {
        res.pause();
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          finish: () => {
            res.resume();
            return done;
          },
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the cosi-server process', () => {
  test('env vars, port 0 JSON line, curl, and SIGTERM letting a transfer finish', async () => {
    const cat = await tempCatalog({ 'big.cosi': bigPath, 'sub/small.cosi': smallPath });
    const child = spawn(process.execPath, [CLI, '--port', '0', '--shutdown-grace', '20'], {
      env: { ...process.env, COSI_ROOT: cat.dir, COSI_HOST: '127.0.0.1', COSI_QUIET: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', () => reject(new Error(`server exited: ${stderr}`)));
      });
      const info = JSON.parse(line);
      assert.equal(info.event, 'listening');
      assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(info.images, 2);

      const meta = json(await http(info.url, '/v1/images/sub/small/metadata.json'));
      const root = meta.images.find((f: { mountPoint: string }) => f.mountPoint === '/').image;
      const part = await run('curl', ['-s', '-f', `${info.url}/v1/images/sub/small/partitions/root`]);
      assert.equal(sha384(part.stdout), root.sha384);

      // A rate-limited download is in flight when SIGTERM arrives: it must complete.
      const out = join(cat.dir, '..', `${cat.dir.split('/').pop()}-download`);
      const dl = run('curl', ['-s', '-f', '--limit-rate', '16M', '-o', out, `${info.url}/cosi/big.cosi`]);
      // SIGTERM only once bytes flow: on a busy machine curl may need more than a moment to connect.
      for (const until = Date.now() + 20_000; Date.now() < until; ) {
        if (((await stat(out).catch(() => undefined))?.size ?? 0) > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGTERM');
      const res = await dl;
      assert.equal(res.code, 0, `curl: ${res.stderr}`);
      const got = await readFile(out);
      await rm(out, { force: true });
      assert.equal(got.length, big.length);
      assert.ok(got.equals(big), 'in-flight transfer finished byte-exact');
      assert.equal(await exited, 0, stderr);
      // New connections are refused once it is gone.
      const after = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `${info.url}/healthz`]);
      assert.notEqual(after.code, 0);
    } finally {
      child.kill('SIGKILL');
      await cat.cleanup();
    }
  });

  test('usage errors are one line with exit code 2', async () => {
    const r = await run(process.execPath, [CLI, '--port', 'seventy']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /^cosi-server: error: --port must be a number/);
    const tls = await run(process.execPath, [CLI, '--tls-cert', 'x.pem']);
    assert.equal(tls.code, 2);
    assert.match(tls.stderr, /--tls-cert and --tls-key go together/);
  });
});

describe('a changing catalog', () => {
  test('replaced by atomic rename between and during transfers: new ETag, never spliced bytes', async () => {
    const cat = await tempCatalog({ 'img.cosi': bigPath });
    // No watcher and no rescan: the serve-time identity check alone must catch the swap.
    const srv = await startServer({ root: cat.dir, port: 0, log: false, watch: false, rescanSeconds: 0 });
    try {
      const first = await http(srv.url, '/cosi/img.cosi', { method: 'HEAD' });
      const oldEtag = String(first.headers.etag);
      const oldRoot = await http(srv.url, '/v1/images/img/partitions/root');

      // A slow download of the old file is paused mid-way when the file is replaced.
      const slow = await startSlow(srv.url, '/cosi/img.cosi');
      assert.equal(slow.status, 200);
      await copyFile(small4kPath, join(cat.dir, '.img.cosi.tmp'));
      await rename(join(cat.dir, '.img.cosi.tmp'), join(cat.dir, 'img.cosi'));

      // A resuming client with the old ETag gets the whole new file, not a 206 of new bytes.
      const resumed = await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=1000-1999', 'If-Range': oldEtag } });
      assert.equal(resumed.status, 200);
      assert.notEqual(resumed.headers.etag, oldEtag);
      assert.ok(resumed.body.equals(small4k));
      // Offsets come from the new file's index.
      const newOffsets = await pythonTarOffsets(small4kPath);
      const img = json(await http(srv.url, '/v1/images/img'));
      assert.deepEqual(img.entries.map((e: { dataOffset: number }) => e.dataOffset), newOffsets.map((o) => o.offsetData));
      const newMeta = JSON.parse(small4k.subarray(newOffsets[1]!.offsetData, newOffsets[1]!.offsetData + newOffsets[1]!.size).toString());
      const newRoot = await http(srv.url, '/v1/images/img/partitions/root');
      assert.equal(sha384(newRoot.body), newMeta.images.find((f: { mountPoint: string }) => f.mountPoint === '/').image.sha384);
      assert.notEqual(newRoot.headers.etag, oldRoot.headers.etag);

      // The paused transfer still delivers exactly the old file it started with.
      const rest = await slow.finish();
      assert.equal(rest.complete, true);
      assert.ok(rest.body.equals(big), 'old transfer is the old file, whole');

      // Removed: gone at once, even before any rescan.
      await rm(join(cat.dir, 'img.cosi'));
      assert.equal((await http(srv.url, '/cosi/img.cosi')).status, 404);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('the watcher picks up added and removed files without a restart', async () => {
    const cat = await tempCatalog({});
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0 });
    const until = async (cond: () => Promise<boolean>) => {
      for (let i = 0; i < 100 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      assert.equal(json(await http(srv.url, '/v1/images')).count, 0);
      await copyFile(smallPath, join(cat.dir, '.new.tmp'));
      await rename(join(cat.dir, '.new.tmp'), join(cat.dir, 'new.cosi'));
      await until(async () => json(await http(srv.url, '/v1/images')).count === 1);
      assert.deepEqual(json(await http(srv.url, '/v1/images')).images.map((i: { id: string }) => i.id), ['new']);
      await rm(join(cat.dir, 'new.cosi'));
      await until(async () => json(await http(srv.url, '/v1/images')).count === 0);
      assert.equal(json(await http(srv.url, '/v1/images')).count, 0);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });
});

describe('corruption, tokens and limits', () => {
  test('a corrupt image: decompress=1 aborts visibly, --verify marks the partition', async () => {
    const cat = await tempCatalog({ 'bad.cosi': smallPath, 'good.cosi': smallPath });
    const offsets = await pythonTarOffsets(smallPath);
    const meta = JSON.parse(small.subarray(offsets[1]!.offsetData, offsets[1]!.offsetData + offsets[1]!.size).toString());
    const root = meta.images.find((f: { mountPoint: string }) => f.mountPoint === '/').image;
    const entry = offsets.find((o) => o.name === root.path)!;
    // Flip a byte inside the leading skippable frame: zstd still decodes, only the SHA-384 can tell.
    const fh = await open(join(cat.dir, 'bad.cosi'), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, entry.offsetData + 12);
    b[0]! ^= 0xff;
    await fh.write(b, 0, 1, entry.offsetData + 12);
    await fh.close();
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, verify: true });
    try {
      const good = await run('curl', ['-s', '-f', `${srv.url}/v1/images/good/partitions/root?decompress=1`]);
      assert.equal(good.code, 0);
      assert.equal(good.stdout.length, root.uncompressedSize);
      const bad = await run('curl', ['-s', `${srv.url}/v1/images/bad/partitions/root?decompress=1`]);
      assert.notEqual(bad.code, 0, 'curl reports the cut connection');
      assert.ok(bad.stdout.length < root.uncompressedSize, `short body: ${bad.stdout.length} < ${root.uncompressedSize}`);
      assert.ok(good.stdout.subarray(0, bad.stdout.length).equals(bad.stdout), 'what arrived is a prefix of the right bytes');

      await srv.catalog.verifyIdle();
      const img = json(await http(srv.url, '/v1/images/bad'));
      const p = img.partitions.find((x: { mountPoint: string }) => x.mountPoint === '/');
      assert.match(p.verified, /SHA-384 mismatch/);
      assert.equal(img.corrupt, 1);
      assert.ok(json(await http(srv.url, '/v1/images/good')).partitions.every((x: { verified: string }) => x.verified === 'ok'));
      const page = (await http(srv.url, '/')).body.toString();
      assert.match(page, /1 corrupt/);
      // The blob route prefers a copy that verified.
      const blob = await http(srv.url, `/v1/blobs/sha384/${root.sha384}`);
      assert.equal(sha384(blob.body), root.sha384);
      const metrics = (await http(srv.url, '/metrics')).body.toString();
      assert.match(metrics, /cosi_verify_corrupt_total 1/);
      assert.match(metrics, /cosi_http_aborted_total\{reason="COSI_ERR_HASH_MISMATCH"\} 1/, 'cut because of the hash, not the decoder');
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('bearer tokens: 401 without or with a wrong one, 200 with a listed one', async () => {
    const cat = await tempCatalog({ 'small.cosi': smallPath });
    const tokens = join(cat.dir, '.tokens');
    await writeFile(tokens, '# private catalog\nalpha-token\n\nbeta-token\n');
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, tokenFile: tokens });
    try {
      const none = await http(srv.url, '/cosi/small.cosi');
      assert.equal(none.status, 401);
      assert.equal(json(none).error.code, 'UNAUTHORIZED');
      assert.match(String(none.headers['www-authenticate']), /^Bearer/);
      assert.equal((await http(srv.url, '/v1/images', { headers: { Authorization: 'Bearer alpha-tokeN' } })).status, 401);
      assert.equal((await http(srv.url, '/v1/images', { headers: { Authorization: 'Basic YWxwaGEtdG9rZW4=' } })).status, 401);
      const ok = await http(srv.url, '/cosi/small.cosi', { headers: { Authorization: 'Bearer beta-token', Range: 'bytes=0-10' } });
      assert.equal(ok.status, 206);
      assert.deepEqual(ok.body, small.subarray(0, 11));
      assert.equal((await http(srv.url, '/healthz')).status, 200, 'health checks need no token');
      const curl = await run('curl', ['-s', '-f', '-H', 'Authorization: Bearer alpha-token', `${srv.url}/v1/images/small/metadata.json`]);
      assert.equal(curl.code, 0);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('decompressions over the cap get 503 with Retry-After; graceful close waits for a paused transfer', async () => {
    const cat = await tempCatalog({ 'big.cosi': bigPath });
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, maxDecompressions: 1 });
    let closed = false;
    try {
      const rootSize = json(await http(srv.url, '/v1/images/big')).partitions.find((p: { selector: string }) => p.selector === 'root').uncompressedSize;
      const first = await startSlow(srv.url, '/v1/images/big/partitions/root?decompress=1');
      assert.equal(first.status, 200);
      const second = await http(srv.url, '/v1/images/big/partitions/root?decompress=1');
      assert.equal(second.status, 503);
      assert.ok(second.headers['retry-after']);
      assert.equal(json(second).error.code, 'BUSY');

      const raw = await startSlow(srv.url, '/cosi/big.cosi');
      const closing = srv.close(10_000).then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed, false, 'close waits for running transfers');
      const [a, b] = await Promise.all([first.finish(), raw.finish()]);
      assert.equal(b.complete, true);
      assert.ok(b.body.equals(big));
      assert.equal(a.complete, true);
      assert.equal(a.body.length, rootSize, 'decoded partition complete');
      await closing;
      assert.equal(closed, true);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });
});

describe('filesystem edges', () => {
  test('symlinks: inside the root served, leaving the root refused and listed', async () => {
    const cat = await tempCatalog({ 'real/small.cosi': smallPath });
    const { symlink } = await import('node:fs/promises');
    await symlink(join(cat.dir, 'real/small.cosi'), join(cat.dir, 'alias.cosi'));
    await symlink(small4kPath, join(cat.dir, 'escape.cosi'));
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0 });
    try {
      const list = json(await http(srv.url, '/v1/images')).images;
      const byId = Object.fromEntries(list.map((i: { id: string }) => [i.id, i]));
      assert.equal(byId['alias'].valid, true);
      assert.equal(byId['escape'].valid, false);
      assert.match(byId['escape'].reason, /outside the catalog root/);
      assert.ok((await http(srv.url, '/cosi/alias.cosi')).body.equals(small));
      const esc = await http(srv.url, '/cosi/escape.cosi');
      assert.equal(esc.status, 403);
      assert.ok(!esc.body.includes(Buffer.from('cosi-marker')));
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('TLS with --tls-cert/--tls-key', async () => {
    const cat = await tempCatalog({ 'small.cosi': smallPath });
    const key = join(cat.dir, '.key.pem');
    const cert = join(cat.dir, '.cert.pem');
    const gen = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1']);
    assert.equal(gen.code, 0, gen.stderr);
    const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, tlsCert: cert, tlsKey: key });
    try {
      assert.match(srv.url, /^https:\/\//);
      const r = await run('curl', ['-s', '-f', '-k', '-r', '0-10', `${srv.url}/cosi/small.cosi`]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout, small.subarray(0, 11));
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });
});
