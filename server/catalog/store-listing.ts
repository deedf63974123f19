/**
 * A store prefix (`--remote s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`)
 * turned into one remote spec per `*.cosi` object under it, from the store's
 * paged listing. Each carries the listing's ETag and size, so a rescan
 * re-indexes exactly the objects whose ETag changed, without a request per
 * object. Ids are the keys relative to the prefix (under the prefix's NAME
 * when it has one), so every replica over the same bucket lists the same ids.
 */
import { backendFor } from '../../shared/transport/store/backends.js';
import { parseStoreUrl, storeUrl } from '../../shared/transport/store/url.js';
import { encodePath, safeSegments } from './ids.js';
import type { RemoteSpec } from './remote-spec.js';
import { COSI_EXT } from './scanner.js';

export interface Listed {
  specs: RemoteSpec[];
  /** Keys ending in .cosi that make no usable id (empty or odd segments). */
  skipped: string[];
  requests: number;
}

export async function listStorePrefix(prefix: RemoteSpec, env: NodeJS.ProcessEnv = process.env): Promise<Listed> {
  const loc = parseStoreUrl(prefix.url);
  const backend = await backendFor(loc, env);
  const before = backend.listRequests;
  const specs: RemoteSpec[] = [];
  const skipped: string[] = [];
  for await (const o of backend.list(loc.key)) {
    if (!o.key.endsWith(COSI_EXT)) continue;
    const rel = o.key.slice(loc.key.length, -COSI_EXT.length);
    // Keys are raw text: encoded first, so safeSegments' decoding gives them back as they are.
    const segs = safeSegments(encodePath(prefix.id ? `${prefix.id}/${rel}` : rel));
    if (!segs || segs.length === 0) {
      skipped.push(o.key);
      continue;
    }
    specs.push({
      id: segs.join('/'),
      url: storeUrl(loc, o.key),
      listed: { size: o.size, etag: o.etag, ...(o.lastModified ? { lastModified: o.lastModified.toUTCString() } : {}) },
      from: prefix.url,
    });
  }
  return { specs, skipped, requests: backend.listRequests - before };
}
