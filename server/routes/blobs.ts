/**
 * /v1/blobs/sha384/{hex}: partition images addressed by content. The bytes
 * behind a hash never change, so any cache may keep them for a year, and
 * every image holding the same partition shares one URL.
 */
import { Hono } from 'hono';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { notFound } from '../errors.js';
import { originHeaders, sliceOf, transfer } from '../http/transfer.js';

const HEX96 = /^[0-9a-fA-F]{96}$/;

export function blobRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  getCounted(app, '/v1/blobs/sha384/:hex', 'blob', async (c, stats) => {
    const hex = c.req.param('hex');
    if (!HEX96.test(hex)) throw notFound('a blob is named by 96 hex digits of SHA-384');
    const sha = hex.toLowerCase();
    for (const id of deps.catalog.blobHolders(sha)) {
      const a = await deps.catalog.open(id).catch(() => undefined);
      if (!a) continue;
      // The holder may have been replaced since the scan: trust only the record for the open handle,
      // and skip copies --verify found corrupt.
      const part = a.record.archive?.partitions.find(
        (p) => p.entry && p.info.image.sha384?.toLowerCase() === sha && (p.verified === undefined || p.verified === 'ok'),
      );
      if (!part?.entry) {
        await a.release();
        continue;
      }
      stats.id = id;
      const img = part.info.image;
      return transfer(
        c,
        deps,
        sliceOf(a, part.entry.dataOffset, part.entry.size, {
          etag: `"${sha}"`,
          lastModified: a.record.lastModified,
          contentType: 'application/zstd',
          headers: {
            'Cache-Control': 'public, max-age=31536000, immutable',
            'X-Cosi-Sha384': sha,
            'X-Cosi-Compressed-Size': String(img.compressedSize),
            'X-Cosi-Uncompressed-Size': String(img.uncompressedSize),
            ...originHeaders(deps, a, part.entry.dataOffset, part.entry.size),
          },
        }),
        a,
      );
    }
    throw notFound(`no image in the catalog holds a blob with SHA-384 ${sha}`);
  });
  return app;
}
