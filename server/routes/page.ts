/**
 * GET /: the catalog page, filtered (?q=) and paged (?page=); GET /images/ID:
 * the detail view of one image. Server-rendered HTML from server/page/, no
 * build step and no external assets.
 */
import { Hono } from 'hono';
import { html } from 'hono/html';
import { rawPathAfter, safeSegments } from '../catalog/ids.js';
import { notFound } from '../errors.js';
import { baseUrl } from '../http/base-url.js';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { detailView } from '../page/detail.js';
import { listQuery, listView } from '../page/list.js';
import { humanBytes, pageDocument } from '../page/parts.js';
import { summarize } from '../summary.js';

export function pageRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  getCounted(app, '/', 'page', async (c) => {
    // The address clients use (--public-url behind a proxy), as boot.ipxe has it: the commands must work as shown.
    const origin = baseUrl(c, deps);
    const records = await deps.catalog.list();
    const valid = records.filter((r) => r.valid).length;
    const total = records.reduce((n, r) => n + r.identity.size, 0);
    const scanned = deps.catalog.lastScan ? ` · scanned ${deps.catalog.lastScan.toISOString().replace('T', ' ').slice(0, 19)} UTC` : '';
    c.header('Cache-Control', 'no-cache');
    return c.html(
      pageDocument({
        title: 'COSI catalog',
        sub: html`<span class="sub">${records.length} image${records.length === 1 ? '' : 's'} · ${valid} valid · ${humanBytes(total)}${scanned}</span>`,
        body: listView(origin, records, listQuery((name) => c.req.query(name))),
      }),
    );
  });

  getCounted(app, '/images/*', 'page-image', async (c, stats) => {
    const segs = safeSegments(rawPathAfter(c.req.url, '/images/') ?? '');
    const id = segs?.join('/');
    if (!id || !deps.catalog.has(id)) throw notFound(`no image at ${c.req.path}; the catalog is at /`);
    stats.id = id;
    const record = await deps.catalog.record(id);
    if (!record) throw notFound(`no image ${JSON.stringify(id)}`);
    c.header('Cache-Control', 'no-cache');
    return c.html(
      pageDocument({
        title: `${summarize(record).prettyName ?? id} · COSI catalog`,
        sub: html`<span class="sub">${id}</span>`,
        body: detailView(baseUrl(c, deps), record, c.req.query('pkg') ?? ''),
      }),
    );
  });

  return app;
}
