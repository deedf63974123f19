/**
 * A wrong URL says what it answered and where the image is: cosi-server's
 * catalog page, its JSON list, an image's record, detail page and
 * metadata.json, its /metrics and /healthz, each against a real server;
 * never the false "no Range support" warning, for fetch as for inspect. A
 * plain server's HTML page or text is named as that too.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { runFetch, startCatalogServer, type CliResult } from './client-helpers.js';
import { packedDisk, SMALL } from './fixtures.js';

let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let file: string;

before(async () => {
  srv = await startCatalogServer({ 'small.cosi': (await packedDisk(SMALL)).cosi });
  file = `${srv.url}/cosi/small.cosi`;
});
after(async () => {
  await srv.stop();
  await closeSharedAgents();
});

function wrongUrl(r: CliResult, re: RegExp): void {
  assert.equal(r.code, 5, r.stderr);
  assert.doesNotMatch(r.stderr, /Range/, 'no false "does not support Range requests"');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, re);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('the catalog page and an image page: an HTML page, and the .cosi URL it links', async () => {
  wrongUrl(await runFetch(['inspect', `${srv.url}/`]), new RegExp(`answered with an HTML page \\(text/html\\), not a COSI file; the page links one image: ${esc(file)}\\n$`));
  wrongUrl(await runFetch(['-p', 'root', `${srv.url}/images/small`]), new RegExp(`an HTML page .*the page links one image: ${esc(file)}`));
});

test('the API: the list, a record and its metadata.json name the file to use', async () => {
  wrongUrl(await runFetch(['inspect', `${srv.url}/v1/images`]), new RegExp(`a JSON document \\(application/json\\), not a COSI file; it is cosi-server's catalog of 1 image\\(s\\); give one image's file URL, e.g. ${esc(file)}\\n$`));
  wrongUrl(await runFetch(['verify', `${srv.url}/v1/images/small`]), new RegExp(`it is cosi-server's record of image "small"; the image itself is at ${esc(file)}\\n$`));
  wrongUrl(await runFetch(['inspect', `${srv.url}/v1/images/small/metadata.json`]), new RegExp(`it is a COSI metadata\\.json, not the archive; the archive is at ${esc(file)}\\n$`));
});

/** A server that answers every GET with `body` as `contentType` (200, no Range support), at `path` on it. */
async function withPlainServer(contentType: string, body: string, path: string, run: (url: string) => Promise<void>): Promise<void> {
  const plain = createServer((_req, res) => {
    res.setHeader('content-type', contentType);
    res.end(body);
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  try {
    await run(`http://127.0.0.1:${(plain.address() as { port: number }).port}${path}`);
  } finally {
    plain.close();
  }
}

test('a plain server without Range support answering HTML: named as a page, no Range warning', async () => {
  await withPlainServer('text/html; charset=utf-8', '<!doctype html><title>Login</title><form>sign in</form>', '/image.cosi', async (url) => {
    wrongUrl(await runFetch(['inspect', url]), /GET .*image\.cosi: answered with an HTML page \(text\/html\), not a COSI file\n$/);
  });
});

test("cosi-server's /metrics and /healthz: named, with an image URL to use, and no Range warning, for fetch, --disk, verify and inspect", async () => {
  const out = await mkdtemp(join(tmpdir(), 'cosi-wrong-url-'));
  try {
    const metrics = new RegExp(`GET ${esc(srv.url)}/metrics: answered with text \\(text/plain; version=0\\.0\\.4; charset=utf-8\\), not a COSI file; it is cosi-server's Prometheus metrics, not an image; give one image's file URL, e\\.g\\. ${esc(file)}\\n$`);
    for (const args of [['inspect'], ['verify'], ['-p', 'root', '-o', join(out, 'r.img')], ['--disk', '-o', join(out, 'd.img')]]) {
      wrongUrl(await runFetch([...args, `${srv.url}/metrics`]), metrics);
    }
    wrongUrl(await runFetch(['-p', 'root', '-o', join(out, 'r.img'), `${srv.url}/healthz`]), new RegExp(`a JSON document \\(application/json\\), not a COSI file; it is cosi-server's health check, not an image; give one image's file URL, e\\.g\\. ${esc(file)}\\n$`));
    assert.deepEqual(await readdir(out), [], 'nothing written');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('a plain server without Range support answering text: named as text with its type, no Range warning', async () => {
  await withPlainServer('text/plain', '# not an image\nsome notes\n', '/notes.txt', async (url) => {
    for (const args of [['inspect'], ['--disk', '-o', '/dev/null']]) {
      wrongUrl(await runFetch([...args, url]), /: error: GET .*notes\.txt: answered with text \(text\/plain\), not a COSI file\n$/);
    }
  });
});
