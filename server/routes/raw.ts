/**
 * /cosi/{relative path}: the archive file itself, for installers that read
 * COSI by range (Trident needs Accept-Ranges and exact Content-Length) and
 * for plain tools like curl. The path is a key into the index, never joined
 * to the root. With --redirect, a remote archive is answered with a 307 to
 * its origin: a redirect carries no byte offset, but this URL is the whole
 * file, so every range the client asks of the origin means the same bytes.
 */
import { Hono } from 'hono';
import type { OpenArchive } from '../catalog/open-archive.js';
import { COSI_EXT } from '../catalog/scanner.js';
import type { ByteBody } from '../http/bytes.js';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { notFound } from '../errors.js';
import { rawPathAfter, safeSegments } from '../catalog/ids.js';
import { sliceOf, transfer } from '../http/transfer.js';

/** The catalog id a /cosi/ path (after the prefix, still encoded) names, if it is a safe archive path. */
export function rawId(raw: string | undefined): string | undefined {
  const segs = raw === undefined ? undefined : safeSegments(raw);
  const rel = segs?.join('/');
  if (!rel || !rel.endsWith(COSI_EXT)) return undefined;
  return rel.slice(0, -COSI_EXT.length);
}

/** The whole archive file as a byte body. */
export function rawBody(a: OpenArchive): ByteBody {
  const r = a.record;
  return sliceOf(a, 0, r.identity.size, {
    etag: r.etag,
    lastModified: r.lastModified,
    contentType: 'application/x-tar',
    headers: r.archive ? { 'X-Cosi-Metadata-Sha384': r.archive.metadataSha384 } : {},
  });
}

export function rawRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  getCounted(app, '/cosi/*', 'raw', async (c, stats) => {
    const id = rawId(rawPathAfter(c.req.url, '/cosi/'));
    if (id === undefined) throw notFound(`no archive at ${c.req.path}`);
    const origin = deps.redirect ? await deps.catalog.originOf(id) : undefined;
    if (origin) {
      // The whole archive is the origin's file, byte for byte: let the client take it (and its ranges) from there.
      stats.id = id;
      stats.route = 'raw-redirect';
      const headers: Record<string, string> = { Location: origin, 'Cache-Control': 'no-cache' };
      const sha = (await deps.catalog.open(id))?.record.archive?.metadataSha384;
      if (sha) headers['X-Cosi-Metadata-Sha384'] = sha;
      return c.body(null, 307, headers);
    }
    const a = deps.catalog.has(id) ? await deps.catalog.open(id) : undefined;
    if (!a) throw notFound(`no archive at ${c.req.path}`);
    stats.id = id;
    return transfer(c, deps, rawBody(a), a);
  });
  return app;
}
