/**
 * A wrong URL says what it answered and where the image is: cosi-server's
 * catalog page, its JSON list, an image's record, detail page and
 * metadata.json, each against a real server; never the false "no Range
 * support" warning. A plain server's HTML page is named as one too.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
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

test('a plain server without Range support answering HTML: named as a page, no Range warning', async () => {
  const plain = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><title>Login</title><form>sign in</form>');
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(plain.address() as { port: number }).port}/image.cosi`;
    wrongUrl(await runFetch(['inspect', url]), /GET .*image\.cosi: answered with an HTML page \(text\/html\), not a COSI file\n$/);
  } finally {
    plain.close();
  }
});
