/**
 * The catalog page in a real browser: Debian's Chromium, headless, driven
 * over the DevTools protocol by puppeteer-core (no browser download), against
 * the real server with 1,004 real archives. Slow, so not part of `npm test`:
 * `npm run test:browser` runs it (COSI_BROWSER_TEST=1), and it skips with its
 * reason when Chromium is absent. Screenshots at 1280 and 700 px and the
 * page's measured size and render time stay in the temp dir it prints.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { pageCatalog, RICH_PACKAGES, type PageCatalog } from './page-helpers.js';
import { CONTRAST_PROBE, LABELS_PROBE, layoutProbe } from './page-probes.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLEET = 1000;
/** Navigation and paint timing of the loaded page, in ms from the navigation's start (-1: no paint recorded). */
const TIMING = `(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return { body: nav.decodedBodySize, response: nav.responseEnd - nav.requestStart, firstContentfulPaint: fcp ? fcp.startTime : -1, domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
})()`;
const skip =
  process.env.COSI_BROWSER_TEST !== '1'
    ? 'the browser suite runs with npm run test:browser'
    : !existsSync(CHROMIUM)
      ? `${CHROMIUM} is missing (apt-get install -y chromium)`
      : false;

describe('the catalog page in headless Chromium', { skip }, () => {
  let cat: PageCatalog;
  let browser: Browser;
  let dir: string;
  const errors: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cosi-page-browser-'));
    cat = await pageCatalog(FLEET);
    const { default: puppeteer } = await import('puppeteer-core');
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(dir, 'profile'),
      timeout: 60_000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    await browser.defaultBrowserContext().overridePermissions(cat.srv.url, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
  });

  after(async () => {
    await browser?.close();
    await cat?.close();
    // The screenshots and figures stay; the browser profile goes.
    if (dir) await rm(join(dir, 'profile'), { recursive: true, force: true });
  });

  /** A fresh tab at `width`, every console error, page error, failed or 4xx/5xx request noted. */
  async function tab(width: number, path: string): Promise<Page> {
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    page.on('console', (m) => void (m.type() === 'error' && errors.push(`console: ${m.text()}`)));
    page.on('pageerror', (e) => void errors.push(`page error: ${(e as Error).message}`));
    page.on('requestfailed', (r) => void errors.push(`request failed: ${r.url()}`));
    page.on('response', (r) => void (r.status() >= 400 && errors.push(`${r.status()} for ${r.url()}`)));
    await page.setViewport({ width, height: 900 });
    await page.goto(cat.srv.url + path, { waitUntil: 'load' });
    return page;
  }
  const text = (page: Page, sel: string) => page.evaluate(`document.querySelector(${JSON.stringify(sel)})?.textContent.trim()`) as Promise<string | undefined>;
  const ids = (page: Page) => page.evaluate(`[...document.querySelectorAll('.card .id')].map((e) => e.textContent)`) as Promise<string[]>;
  const shot = (page: Page, name: string) => page.screenshot({ path: join(dir, name), fullPage: name.startsWith('detail') });
  const noErrors = () => assert.deepEqual(errors.splice(0), [], 'no console error, page error or failed request');
  async function checks(page: Page, scope: string): Promise<void> {
    assert.deepEqual(await page.evaluate(layoutProbe(scope)), [], 'layout');
    assert.deepEqual(await page.evaluate(CONTRAST_PROBE), [], 'contrast');
    assert.deepEqual(await page.evaluate(LABELS_PROBE), [], 'labels');
  }

  test(`loads with no console error; size and first render at ${FLEET + 4} images`, async (t) => {
    const page = await tab(1280, '/');
    await page.bringToFront();
    // Three loads (the first also warms the server); each figure is reported as the median.
    const runs: Array<Record<string, number>> = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await page.reload({ waitUntil: 'load' });
      await page.waitForFunction(`performance.getEntriesByName('first-contentful-paint').length > 0`, { timeout: 5000 }).catch(() => undefined);
      runs.push((await page.evaluate(TIMING)) as Record<string, number>);
    }
    const median = (k: string) => runs.map((r) => r[k]!).sort((a, b) => a - b)[1]!;
    const figures = {
      images: FLEET + 4,
      cardsOnPage: (await ids(page)).length,
      bytes: runs[0]!.body,
      medianMs: Object.fromEntries(['response', 'firstContentfulPaint', 'domContentLoaded', 'load'].map((k) => [k, Math.round(median(k))])),
      runs,
    };
    await writeFile(join(dir, 'figures.json'), JSON.stringify(figures, null, 2) + '\n');
    const m = figures.medianMs;
    t.diagnostic(`page 1 of ${figures.images} images: ${figures.bytes} bytes; median of 3 loads: served in ${m.response} ms, first contentful paint ${m.firstContentfulPaint} ms, DOMContentLoaded ${m.domContentLoaded} ms, load ${m.load} ms`);
    t.diagnostic(`screenshots and figures.json in ${dir}`);
    assert.equal(figures.cardsOnPage, 50);
    assert.equal(await text(page, '#count'), '1–50 of 1,004 images');
    await shot(page, 'list-1280.png');
    await checks(page, '.tools, .pager, .card:nth-of-type(-n+3), header');
    noErrors();
    await page.close();
  });

  test('the filter narrows the list as one types; the pager keeps it', async () => {
    const page = await tab(1280, '/');
    await page.type('#q', 'small4k');
    await page.waitForFunction(`document.querySelectorAll('.card').length === 1`);
    assert.deepEqual(await ids(page), ['lab/small4k']);
    assert.equal(await text(page, '#count'), '1 image matching (of 1,004)');
    assert.equal(new URL(page.url()).search, '?q=small4k', 'the address can be shared');
    await page.click('#q', { count: 3 });
    await page.type('#q', 'node-09');
    await page.waitForFunction(`document.getElementById('count').textContent.includes('of 100 images')`);
    assert.equal((await ids(page))[0], 'fleet/node-0900');
    await Promise.all([page.waitForNavigation(), page.click('.pager a[rel=next]')]);
    assert.equal(new URL(page.url()).search, '?q=node-09&page=2');
    assert.equal((await ids(page))[0], 'fleet/node-0950');
    // Enter submits at once, without waiting for the pause after typing.
    await page.click('#q', { count: 3 });
    await page.type('#q', 'invalid');
    await page.keyboard.press('Enter');
    await page.waitForFunction(`document.querySelectorAll('.card').length === 1`);
    assert.deepEqual(await ids(page), ['broken/notes']);
    noErrors();
    await page.close();
  });

  test(`paging through ${FLEET + 4} images`, async () => {
    const page = await tab(1280, '/');
    await Promise.all([page.waitForNavigation(), page.click('.pager a[aria-label="Page 21"]')]);
    assert.deepEqual(await ids(page), ['lab/small4k', 'rich', 'small', 'broken/notes']);
    assert.equal(await text(page, '.pager [aria-current=page]'), '21');
    await Promise.all([page.waitForNavigation(), page.click('.pager a[rel=prev]')]);
    assert.equal((await ids(page))[0], 'fleet/node-0950');
    assert.equal(await text(page, '#count'), '951–1,000 of 1,004 images');
    noErrors();
    await page.close();
  });

  test('Copy puts the command on the clipboard, by mouse and by keyboard', async () => {
    const page = await tab(1280, '/?q=small');
    await page.bringToFront();
    const first = (await text(page, 'tr.cmdrow code'))!;
    assert.match(first, /^cosi-fetch --partition esp -o small4k-esp\.img http:\/\/127\.0\.0\.1:\d+\/cosi\/lab\/small4k\.cosi$/);
    await page.click('tr.cmdrow button[data-copy]');
    await page.waitForFunction(`document.querySelector('tr.cmdrow button[data-copy]').textContent === 'Copied'`);
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), first);
    // The status is emptied and refilled 30 ms later so that screen readers announce it again.
    await page.waitForFunction(`document.getElementById('status').textContent === 'Copied to the clipboard'`);
    // Keyboard only: Tab from the filter to the first Copy button (the whole-disk command), then Enter.
    await page.focus('#q');
    for (let i = 0; i < 30 && !(await page.evaluate(`document.activeElement.matches('button[data-copy]')`)); i++) await page.keyboard.press('Tab');
    const focused = (await page.evaluate(`(() => { const b = document.activeElement; const s = getComputedStyle(b); return { code: b.parentElement.querySelector('code').textContent, outline: s.outlineStyle + ' ' + s.outlineWidth }; })()`)) as { code: string; outline: string };
    assert.match(focused.code, /^cosi-fetch --disk -o small4k-disk\.img /);
    assert.match(focused.outline, /^solid [2-9]/, 'the focused button shows it');
    await page.keyboard.press('Enter');
    await page.waitForFunction(`document.activeElement.textContent === 'Copied'`);
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), focused.code);
    noErrors();
    await page.close();
  });

  test('without clipboard access, Copy selects the command', async () => {
    const page = await browser.newPage();
    await page.evaluateOnNewDocument(`Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined })`);
    await page.goto(cat.srv.url + '/?q=rich', { waitUntil: 'load' });
    await page.click('tr.cmdrow button[data-copy]');
    await page.waitForFunction(`/^(Copied|Selected)$/.test(document.querySelector('tr.cmdrow button[data-copy]').textContent)`);
    assert.equal(await page.evaluate('getSelection().toString()'), await text(page, 'tr.cmdrow code'));
    await page.close();
  });

  test('the detail view: full hashes with Copy, osRelease, bootloader, package search', async () => {
    const page = await tab(1280, '/?q=rich');
    await Promise.all([page.waitForNavigation(), page.click('.card h2 a')]);
    assert.equal(new URL(page.url()).pathname, '/images/rich');
    assert.equal(await text(page, '#title'), 'Rich <b>Linux</b> & <i>friends</i> 2.0', 'markup in the metadata shows as text');
    const hashes = (await page.evaluate(`[...document.querySelectorAll('.hash code')].map((e) => e.textContent)`)) as string[];
    assert.equal(hashes.filter((h) => /^[0-9a-f]{96}$/.test(h)).length, 4, 'metadata.json and three partitions, in full');
    await page.bringToFront();
    await page.click('.part-card .hash button');
    await page.waitForFunction(`document.querySelector('.part-card .hash button').textContent === 'Copied'`);
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), hashes[1]);
    assert.match((await text(page, '#boot-h + .kv'))!, /systemd-boot/);
    const visibleRows = `[...document.querySelectorAll('#pkgs tbody tr')].filter((r) => !r.hidden).length`;
    assert.equal(await page.evaluate(visibleRows), RICH_PACKAGES.length);
    await page.type('#pkgq', 'BASH');
    await page.waitForFunction(`document.getElementById('pkgcount').textContent === '1 of 300 packages'`);
    assert.equal(await page.evaluate(visibleRows), 1);
    await page.keyboard.press('Enter');
    assert.equal(new URL(page.url()).pathname, '/images/rich', 'Enter in the search box stays on the page');
    await page.click('#pkgq', { count: 3 });
    await page.keyboard.press('Backspace');
    await page.waitForFunction(`document.getElementById('pkgcount').textContent === '300 packages'`);
    await shot(page, 'detail-1280.png');
    await checks(page, 'main');
    noErrors();
    await page.close();
  });

  test('at 700 px nothing overlaps and nothing scrolls sideways', async () => {
    const list = await tab(700, '/?q=small');
    await shot(list, 'list-700.png');
    const heads = (await list.evaluate(`[...document.querySelector('.card thead tr').cells].map((c) => { const r = c.getBoundingClientRect(); return [c.textContent, r.left, r.right]; })`)) as Array<[string, number, number]>;
    assert.deepEqual(heads.map((h) => h[0]), ['#', 'Type · mount point', 'FS', 'Compressed', 'Original', 'Ratio', 'SHA-384'], 'every column still shows');
    for (let i = 1; i < heads.length; i++) assert.ok(heads[i - 1]![2] <= heads[i]![1] + 0.5, `${heads[i - 1]![0]} ends before ${heads[i]![0]} starts`);
    await checks(list, 'main');
    const detail = await tab(700, '/images/rich');
    await shot(detail, 'detail-700.png');
    await checks(detail, 'main');
    noErrors();
    await Promise.all([list.close(), detail.close()]);
  });
});
