/**
 * The catalog page as served (server-rendered HTML over real HTTP): the
 * commands, the filter and paging over 1,004 real archives, the detail view
 * and its escaping, the ratio that `cosi-fetch inspect` prints too, and the
 * access log's byte counts. The same page in a real browser:
 * page-browser.test.ts (npm run test:browser).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRatio } from '../shared/units.js';
import { startServer } from '../server/server.js';
import { runFetch } from './client-helpers.js';
import { pageCatalog, RICH_PACKAGES, type PageCatalog } from './page-helpers.js';
import { http, json } from './server-helpers.js';

const FLEET = 1000;
let cat: PageCatalog;
const lines: Array<Record<string, unknown>> = [];

before(async () => {
  cat = await pageCatalog(FLEET, (l) => void lines.push(l));
});

after(async () => {
  await cat?.close();
});

const page = async (path: string) => {
  const r = await http(cat.srv.url, path);
  assert.equal(r.status, 200, `${path}: ${r.body.toString().slice(0, 200)}`);
  assert.match(String(r.headers['content-type']), /^text\/html/);
  return r.body.toString('utf8');
};
const cards = (html: string) => [...html.matchAll(/<div class="id">([^<]*)<\/div>/g)].map((m) => m[1]);
const countLine = (html: string) => /<span id="count"[^>]*>([^<]*)</.exec(html)?.[1];

describe('formatRatio', () => {
  test('three significant digits of the factor, whole from 100 up, - when there is nothing to divide', () => {
    assert.equal(formatRatio(1000, 3210), '3.21x');
    assert.equal(formatRatio(1000, 16_400), '16.4x');
    assert.equal(formatRatio(3, 49_056), '16352x');
    assert.equal(formatRatio(1000, 9996), '10.0x', 'rounding up to 10 drops a digit');
    assert.equal(formatRatio(1000, 99_960), '100x');
    assert.equal(formatRatio(1000, 980), '0.98x', 'grown by compression');
    assert.equal(formatRatio(0, 100), '-');
    assert.equal(formatRatio(100, 0), '-');
    assert.equal(formatRatio(Number.NaN, 100), '-');
  });
});

describe('the list', () => {
  test('every image with commands for the disk, inspect and each partition', async () => {
    const html = await page('/?q=small');
    const url = cat.srv.url;
    for (const cmd of [
      `cosi-fetch --partition root -o small-root.img ${url}/cosi/small.cosi`,
      `cosi-fetch --partition esp -o small4k-esp.img ${url}/cosi/lab/small4k.cosi`,
      `cosi-fetch --disk -o small-disk.img ${url}/cosi/small.cosi`,
      `cosi-fetch inspect ${url}/cosi/lab/small4k.cosi`,
    ]) {
      assert.ok(html.includes(`<code>${cmd}</code>`), cmd);
    }
    assert.ok(html.includes('<a href="/images/lab/small4k">'), 'each card links to its detail view');
    assert.match(html, /aria-label="Copy the command that fetches root"/, 'Copy buttons say what they copy');
    assert.match(html, /<label for="q">Filter<\/label>/);
  });

  test('the filter matches every word against names, ids, state and partitions', async () => {
    assert.deepEqual(cards(await page('/?q=small4k')), ['lab/small4k']);
    assert.deepEqual(cards(await page('/?q=SYSTEMD-BOOT')), ['rich'], 'bootloader, case-insensitive');
    assert.deepEqual(cards(await page('/?q=invalid')), ['broken/notes']);
    assert.deepEqual(cards(await page('/?q=valid+small')), ['lab/small4k', 'small'], "'valid' is the state, not a part of 'invalid'");
    assert.deepEqual(cards(await page('/?q=valid+notes')), []);
    assert.deepEqual(cards(await page('/?q=small+x86_64+%2Fboot%2Fefi')), ['lab/small4k', 'small'], 'all words, a mount point among them');
    const none = await page('/?q=%3Cscript%3Ezzz');
    assert.deepEqual(cards(none), []);
    assert.match(countLine(none)!, /^No image of 1,004 matches$/);
    assert.ok(none.includes('value="&lt;script&gt;zzz"') && !none.includes('<script>zzz'), 'the query is escaped');
  });

  test(`${FLEET + 4} images: 50 a page, a pager, the last page, a page past the end`, async (t) => {
    const first = await page('/');
    t.diagnostic(`page 1 of ${FLEET + 4} images: ${Buffer.byteLength(first)} bytes`);
    const ids = cards(first);
    assert.equal(ids.length, 50);
    assert.equal(ids[0], 'fleet/node-0000');
    assert.equal(countLine(first), '1–50 of 1,004 images');
    assert.match(first, /<span aria-current="page">1<\/span>/);
    assert.match(first, /<a href="\/\?page=2" rel="next">Next<\/a>/);
    assert.match(first, /<a href="\/\?page=21" aria-label="Page 21">21<\/a>/);
    assert.ok(Buffer.byteLength(first) < 400_000, 'a page stays small whatever the catalog size');

    const second = await page('/?page=2');
    assert.equal(cards(second)[0], 'fleet/node-0050');
    assert.match(second, /<a href="\/" rel="prev">Previous<\/a>/);
    const last = await page('/?page=21');
    assert.deepEqual(cards(last), ['lab/small4k', 'rich', 'small', 'broken/notes'], 'valid first, then the broken file');
    assert.equal(countLine(last), '1,001–1,004 of 1,004 images');
    assert.deepEqual(cards(await page('/?page=999')), cards(last), 'past the end is the last page');
    assert.deepEqual(cards(await page('/?page=-3')), ids, 'nonsense is the first page');

    const filtered = await page('/?q=node-09&page=2');
    assert.equal(countLine(filtered), '51–100 of 100 images matching (of 1,004)');
    assert.equal(cards(filtered)[0], 'fleet/node-0950');
    assert.match(filtered, /<a href="\/\?q=node-09" rel="prev">/, 'pager links keep the filter');
  });
});

describe('the detail view', () => {
  test('full SHA-384s, osRelease, bootloader, packages and commands, all escaped', async () => {
    const img = json(await http(cat.srv.url, '/v1/images/rich'));
    const html = await page('/images/rich');
    assert.ok(html.includes(img.metadataSha384));
    for (const p of img.partitions) {
      assert.match(p.sha384, /^[0-9a-f]{96}$/);
      assert.ok(html.includes(`<code>${p.sha384}</code><button type="button" data-copy`), `${p.selector}: the whole hash with a Copy button`);
      assert.ok(html.includes(`<code>cosi-fetch --partition ${p.selector} -o rich-${p.selector}.img ${cat.srv.url}/cosi/rich.cosi</code>`));
    }
    assert.ok(html.includes(`<code>cosi-fetch --disk -o rich-disk.img ${cat.srv.url}/cosi/rich.cosi</code>`));
    assert.ok(html.includes(`<code>cosi-fetch inspect ${cat.srv.url}/cosi/rich.cosi</code>`));
    assert.ok(html.includes('Rich &lt;b&gt;Linux&lt;/b&gt; &amp; &lt;i&gt;friends&lt;/i&gt; 2.0'), 'PRETTY_NAME, escaped');
    assert.ok(!html.includes('<b>Linux</b>') && !html.includes('<img-src-x>'), 'no metadata text reaches the page as markup');
    assert.ok(html.includes('https://example.invalid/?a=1&amp;b=&lt;2&gt;'));
    assert.ok(html.includes('6.1.0-rich') && html.includes('root=PARTLABEL=root ro quiet'), 'systemd-boot entries');
    const pkgs = /<div class="pkgs"[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)![1]!;
    assert.equal((pkgs.match(/<tr/g) ?? []).length, RICH_PACKAGES.length);
    assert.match(html, /<label for="pkgq">Search packages<\/label>/);
    assert.match(html, /<span id="pkgcount"[^>]*>300 packages</);
  });

  test('?pkg= searches the packages without a script; unknown and unsafe ids are 404', async () => {
    const html = await page('/images/rich?pkg=BASH+x86');
    assert.match(html, /<span id="pkgcount"[^>]*>1 of 300 packages</);
    assert.equal((html.match(/<tr hidden>/g) ?? []).length, 299);
    assert.match(html, /<tr><td>bash<\/td>/);
    for (const path of ['/images/nope', '/images/', '/images/fleet%2Fnode-0001', '/images/small/x']) {
      const r = await http(cat.srv.url, path);
      assert.equal(r.status, 404, path);
      assert.equal(json(r).error.code, 'NOT_FOUND');
    }
    const broken = await page('/images/broken/notes');
    assert.match(broken, /Not valid:.*an HTML page/);
    assert.ok(!broken.includes('id="parts-h"'), 'no partitions to list');
    const head = await http(cat.srv.url, '/images/small', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
  });
});

test('behind a proxy: the commands on the list and the detail view use --public-url, as boot.ipxe does', async () => {
  const srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, watch: false, publicUrl: 'https://images.example.net/cosi-cdn' });
  try {
    for (const path of ['/?q=small4k', '/images/lab/small4k']) {
      const html = (await http(srv.url, path, { headers: { Host: '127.0.0.1' } })).body.toString('utf8');
      assert.match(html, /cosi-fetch inspect https:\/\/images\.example\.net\/cosi-cdn\/cosi\/lab\/small4k\.cosi/, path);
      assert.doesNotMatch(html, /http:\/\/127\.0\.0\.1\/cosi\//, path);
    }
  } finally {
    await srv.close(500);
  }
});

test('the page and cosi-fetch inspect print the same ratio', async () => {
  const html = await page('/images/small');
  const onPage = [...html.matchAll(/<span class="mono pct">([^<]+)<\/span>/g)].map((m) => m[1]);
  const r = await runFetch(['inspect', `${cat.srv.url}/cosi/small.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.split('\n');
  const at = rows.findIndex((l) => l.startsWith('#'));
  const col = rows[at]!.indexOf('RATIO');
  const inInspect = rows.slice(at + 1).filter(Boolean).map((l) => l.slice(col).split(/\s+/)[0]);
  assert.equal(onPage.length, 3);
  assert.deepEqual(inInspect, onPage);
  for (const v of onPage) assert.match(v!, /^\d+(\.\d+)?x$/);
});

test('the access log records the body bytes sent, for every kind of response', async () => {
  const logged = async (method: string, path: string, headers: Record<string, string> = {}) => {
    const r = await http(cat.srv.url, path, { method, headers });
    // The line is written when the response closes, a moment after the client has it all.
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !line; i++) {
      line = lines.findLast((l) => l.url === path && l.method === method && l.range === headers.Range);
      if (!line) await new Promise((res) => setTimeout(res, 10));
    }
    assert.ok(line, `${method} ${path} logged`);
    lines.length = 0;
    return { r, bytes: line.bytes };
  };
  for (const path of ['/', '/?q=rich', '/images/rich', '/v1/images', '/v1/images/small', '/healthz', '/metrics', '/openapi.json', '/nope', '/images/nope']) {
    const { r, bytes } = await logged('GET', path);
    assert.ok(r.body.length > 0);
    assert.equal(bytes, r.body.length, `GET ${path}`);
  }
  assert.equal((await logged('HEAD', '/')).bytes, 0, 'HEAD sends no body');
  assert.equal((await logged('HEAD', '/v1/images')).bytes, 0);
  const ranged = await logged('GET', '/cosi/small.cosi', { Range: 'bytes=0-99' });
  assert.equal(ranged.bytes, 100, 'the /cosi/ fast path');
  const multi = await logged('GET', '/cosi/small.cosi', { Range: 'bytes=0-9,2000-2099', 'If-Range': ranged.r.headers.etag as string });
  assert.equal(multi.r.status, 206);
  assert.equal(multi.bytes, multi.r.body.length, 'multipart: parts and their boundaries');
  const whole = await logged('GET', '/v1/images/small/partitions/root');
  assert.equal(whole.bytes, whole.r.body.length);
  const gone = await logged('GET', '/cosi/small.cosi', { Range: 'bytes=999999999-' });
  assert.equal(gone.r.status, 416);
  assert.equal(gone.bytes, gone.r.body.length, 'an error body from a byte endpoint');
});
