/**
 * Folder shared/transport/store/: objects in S3 (or an S3-compatible store) and Azure Blob Storage as
 * byte sources and listings. Imports ../ (the HTTP source) and errors.ts; the vendors' SDKs are loaded
 * only when a store URL is used.
 *
 * The store URL forms, parsed without any SDK:
 *   s3://BUCKET[/KEY-OR-PREFIX]
 *   az://CONTAINER[/BLOB-OR-PREFIX]
 *   https://ACCOUNT.blob.core.windows.net/CONTAINER[/BLOB-OR-PREFIX]
 */
import { CosiError } from '../../errors.js';

export interface S3Location {
  kind: 's3';
  bucket: string;
  /** An object key, or a prefix when listing; '' for the whole bucket. */
  key: string;
}

export interface AzureLocation {
  kind: 'azure';
  /** From the https form; az:// takes the account from the environment. */
  account?: string;
  container: string;
  key: string;
}

export type StoreLocation = S3Location | AzureLocation;

const AZURE_HOST = /^([a-z0-9]{3,24})\.blob\.core\.windows\.net$/i;

/** s3:// and az:// always; an Azure blob https URL only without a query (a SAS URL is a plain https URL). */
export function isStoreUrl(text: string): boolean {
  if (/^(s3|az):\/\//i.test(text)) return true;
  if (!/^https:\/\//i.test(text)) return false;
  try {
    const u = new URL(text);
    return AZURE_HOST.test(u.hostname) && u.search === '' && !u.username;
  } catch {
    return false;
  }
}

function usage(text: string, why: string): CosiError {
  return new CosiError('COSI_ERR_USAGE', `not a usable store URL ${JSON.stringify(text)}: ${why}`);
}

/** The key part: percent-decoded, '/'-separated, no empty, '.' or '..' segment. */
function keyOf(text: string, raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw.replace(/^\/+/, ''));
  } catch {
    throw usage(text, 'bad percent-encoding');
  }
  const segs = key.split('/');
  const body = key.endsWith('/') ? segs.slice(0, -1) : segs;
  if (key !== '' && body.some((s) => s === '' || s === '.' || s === '..')) throw usage(text, 'empty, "." or ".." path segments');
  return key;
}

export function parseStoreUrl(text: string): StoreLocation {
  const m = /^(s3|az):\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(text);
  if (m) {
    const scheme = m[1]!.toLowerCase();
    const name = m[2]!;
    const key = keyOf(text, m[3] ?? '');
    if (scheme === 's3') {
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)) throw usage(text, 'the bucket name is 3-63 lower-case letters, digits, dots and hyphens');
      return { kind: 's3', bucket: name, key };
    }
    if (!/^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$/.test(name)) throw usage(text, 'the container name is 3-63 lower-case letters, digits and single hyphens');
    return { kind: 'azure', container: name, key };
  }
  if (/^(s3|az):/i.test(text)) throw usage(text, 'write s3://BUCKET/KEY or az://CONTAINER/BLOB (no query or fragment)');
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw usage(text, 'not a URL');
  }
  const host = AZURE_HOST.exec(u.hostname);
  if (!host || u.protocol !== 'https:') throw usage(text, 'expected https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB');
  const [, container = '', ...rest] = u.pathname.split('/');
  if (!container) throw usage(text, 'no container in the path');
  return { kind: 'azure', account: host[1]!.toLowerCase(), container, key: keyOf(text, rest.join('/')) };
}

/** The URL of one object in the canonical form (for ids, logs and messages: it holds no secret). */
export function storeUrl(loc: StoreLocation, key = loc.key): string {
  const path = key.split('/').map(encodeURIComponent).join('/');
  if (loc.kind === 's3') return `s3://${loc.bucket}/${path}`;
  if (loc.account) return `https://${loc.account}.blob.core.windows.net/${loc.container}/${path}`;
  return `az://${loc.container}/${path}`;
}
