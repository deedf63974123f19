/**
 * The dispatcher: one backend per bucket or container (and environment),
 * created on first use, which is when the vendor's SDK is loaded.
 */
import type { StoreBackend } from './backend.js';
import type { StoreLocation } from './url.js';

const cache = new Map<string, Promise<StoreBackend>>();
const envIds = new WeakMap<NodeJS.ProcessEnv, number>();
let nextEnvId = 0;

function envId(env: NodeJS.ProcessEnv): number {
  let id = envIds.get(env);
  if (id === undefined) envIds.set(env, (id = nextEnvId++));
  return id;
}

export function backendFor(loc: StoreLocation, env: NodeJS.ProcessEnv = process.env): Promise<StoreBackend> {
  const key = loc.kind === 's3' ? `s3:${loc.bucket}:${envId(env)}` : `az:${loc.account ?? ''}:${loc.container}:${envId(env)}`;
  let b = cache.get(key);
  if (!b) {
    b =
      loc.kind === 's3'
        ? import('./s3.js').then((m) => m.S3Backend.create(loc.bucket, env))
        : import('./azure.js').then((m) => m.AzureBackend.create(loc.container, loc.account, env));
    // A failed creation (a usage error, a broken profile) is not remembered: the next call tries again.
    b.catch(() => cache.delete(key));
    cache.set(key, b);
  }
  return b;
}
