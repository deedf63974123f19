/**
 * /v1/images: the catalog, one image, its exact metadata.json, and its
 * partitions by selector. Ids may contain slashes (subdirectories), so the
 * path after /v1/images/ is matched against the index rather than a pattern.
 */
import { Hono, type Context } from 'hono';
import { primaryGptRegion } from '../../shared/format/metadata.js';
import { selectPartition } from '../../shared/format/select.js';
import type { OpenArchive } from '../catalog/open-archive.js';
import { sendDecompressed } from '../http/decompress.js';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { HttpError, notFound } from '../errors.js';
import { rawPathAfter, safeSegments } from '../catalog/ids.js';
import { bufferBody, originHeaders, sliceOf, transfer } from '../http/transfer.js';
import type { PartitionRecord } from '../catalog/indexer.js';
import { baseUrl } from '../http/base-url.js';
import { installPlan, ipxeScript } from '../netboot.js';
import { summarize } from '../summary.js';

type Target =
  | { kind: 'image'; id: string }
  | { kind: 'metadata'; id: string }
  | { kind: 'plan'; id: string }
  | { kind: 'ipxe'; id: string }
  | { kind: 'partition'; id: string; selector: string };

/** The fixed names under an image; an image whose own id ends so wins (it is matched first). */
const SUB_RESOURCES: Record<string, 'metadata' | 'plan' | 'ipxe'> = Object.assign(Object.create(null), {
  'metadata.json': 'metadata',
  'plan.txt': 'plan',
  'boot.ipxe': 'ipxe',
});

/** Which image and what of it a path names; the catalog decides where the id ends. */
export function resolveImagePath(raw: string, has: (id: string) => boolean): Target | undefined {
  const partsAt = raw.indexOf('/partitions/');
  // The selector is not a path (it can be '/var' or 'images/root.raw.zst'): decode it whole.
  for (let at = partsAt; at >= 0; at = raw.indexOf('/partitions/', at + 1)) {
    const segs = safeSegments(raw.slice(0, at));
    if (!segs || !has(segs.join('/'))) continue;
    let selector: string;
    try {
      selector = decodeURIComponent(raw.slice(at + '/partitions/'.length));
    } catch {
      return undefined;
    }
    if (selector === '' || selector.includes('\0')) return undefined;
    return { kind: 'partition', id: segs.join('/'), selector };
  }
  const segs = safeSegments(raw);
  if (!segs || segs.length === 0) return undefined;
  const id = segs.join('/');
  if (has(id)) return { kind: 'image', id };
  const leaf = SUB_RESOURCES[segs[segs.length - 1]!];
  if (leaf) {
    const base = segs.slice(0, -1).join('/');
    if (has(base)) return { kind: leaf, id: base };
  }
  return undefined;
}

async function openOr404(deps: AppDeps, id: string): Promise<OpenArchive> {
  const a = await deps.catalog.open(id);
  if (!a) throw notFound(`no image ${JSON.stringify(id)}`);
  return a;
}

function pickPartition(a: OpenArchive, selector: string): PartitionRecord {
  const view = a.record.archive;
  if (!view) throw new HttpError(422, 'COSI_ERR_INVALID', `${a.record.id} is not a readable COSI file: ${a.record.reason}`);
  const gpt = primaryGptRegion(view.metadata);
  if (gpt && (selector === 'primary-gpt' || selector === gpt.image.path)) {
    const e = view.entries.find((x) => x.name === gpt.image.path && x.type === 'file');
    return { info: { path: gpt.image.path, image: gpt.image, role: 'partition' }, entry: e };
  }
  const info = selectPartition(
    view.partitions.map((p) => p.info),
    selector,
  );
  return view.partitions.find((p) => p.info.path === info.path)!;
}

async function servePartition(c: Context<AppEnv>, deps: AppDeps, id: string, selector: string): Promise<Response> {
  const a = await openOr404(deps, id);
  let part: PartitionRecord;
  try {
    part = pickPartition(a, selector);
    if (!part.entry) throw new HttpError(422, 'COSI_ERR_INVALID', `${id}: the archive has no tar entry for ${part.info.path}`);
  } catch (err) {
    await a.release();
    throw err;
  }
  const img = part.info.image;
  if (c.req.query('decompress') === '1') {
    c.get('stats').route = 'partition-decompress';
    return sendDecompressed(c, deps, a, part);
  }
  const sha = img.sha384?.toLowerCase();
  const headers: Record<string, string> = {
    'X-Cosi-Path': img.path,
    'X-Cosi-Compressed-Size': String(img.compressedSize),
    'X-Cosi-Uncompressed-Size': String(img.uncompressedSize),
    'Content-Disposition': `attachment; filename="${img.path.split('/').pop()!.replace(/["\\\r\n]/g, '_')}"`,
  };
  if (sha) headers['X-Cosi-Sha384'] = sha;
  Object.assign(headers, originHeaders(deps, a, part.entry.dataOffset, part.entry.size));
  if (part.verified && part.verified !== 'ok') headers['X-Cosi-Verify'] = part.verified;
  // The declared hash names these bytes wherever they live; without one, the archive's own tag plus the path.
  const etag = sha && /^[0-9a-f]{96}$/.test(sha) ? `"${sha}"` : `"${a.record.etag.slice(1, -1)}-${part.entry.dataOffset}"`;
  return transfer(
    c,
    deps,
    sliceOf(a, part.entry.dataOffset, part.entry.size, { etag, lastModified: a.record.lastModified, contentType: 'application/zstd', headers }),
    a,
  );
}

export function imageRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  getCounted(app, '/v1/images', 'images', async (c) => {
    const list = await deps.catalog.list();
    return c.json({ count: list.length, scannedAt: deps.catalog.lastScan?.toISOString(), images: list.map((r) => summarize(r)) });
  });

  getCounted(app, '/v1/images/*', 'image', async (c, stats) => {
    const raw = rawPathAfter(c.req.url, '/v1/images/');
    const target = raw === undefined ? undefined : resolveImagePath(raw, (id) => deps.catalog.has(id));
    if (!target) throw notFound(`no such image or resource: ${c.req.path}`);
    stats.id = target.id;
    if (target.kind === 'partition') {
      stats.route = 'partition';
      return servePartition(c, deps, target.id, target.selector);
    }
    if (target.kind === 'ipxe' && !deps.netboot) {
      stats.route = 'ipxe';
      throw new HttpError(404, 'NOT_CONFIGURED', 'boot.ipxe is not configured on this server: start it with --ipxe-kernel URL --ipxe-initrd URL');
    }
    const a = await openOr404(deps, target.id);
    if (target.kind === 'plan' || target.kind === 'ipxe') {
      stats.route = target.kind;
      await a.release();
      const base = baseUrl(c, deps);
      const text = target.kind === 'plan' ? installPlan(a.record, base) : ipxeScript(a.record, base, deps.netboot!);
      // Built from the index and the request's Host: cheap to remake, and not to be shared between hosts by a cache.
      return c.body(text, 200, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Cache-Control': 'no-cache',
        Vary: 'Host',
      });
    }
    if (target.kind === 'image') {
      await a.release();
      c.header('ETag', a.record.etag);
      return c.json(summarize(a.record, { entries: true }));
    }
    stats.route = 'metadata';
    const view = a.record.archive;
    if (!view) {
      await a.release();
      throw new HttpError(422, 'COSI_ERR_INVALID', `${target.id} is not a readable COSI file: ${a.record.reason}`);
    }
    await a.release();
    return transfer(
      c,
      deps,
      bufferBody(view.metadataBytes, {
        etag: `"${view.metadataSha384}"`,
        lastModified: a.record.lastModified,
        contentType: 'application/json',
        headers: { 'X-Cosi-Sha384': view.metadataSha384 },
      }),
    );
  });

  return app;
}
