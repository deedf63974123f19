/**
 * What a store does for us, whatever the vendor: sign a read URL for one
 * object, and list the objects under a prefix. Failures become one-line
 * CosiErrors built from the status and the vendor's error code only: an
 * SDK's own message may quote a request (and a request may carry a key or a
 * signature), so it never reaches a user or a log.
 */
import { CosiError } from '../../errors.js';
import { errnoOf, systemError } from '../../errno.js';

export interface StoreObject {
  key: string;
  size: number;
  /** The store's ETag, quoted as in HTTP. */
  etag: string;
  lastModified?: Date;
}

export interface StoreBackend {
  /** A plain https URL whose GET (with Range) reads `key`, good for `ttlSeconds`; unsigned for anonymous access. */
  signedUrl(key: string, ttlSeconds: number): Promise<string>;
  /** Every object under `prefix`, page by page (by default the store's largest pages: 1,000 keys on S3, 5,000 on Azure). */
  list(prefix: string, pageSize?: number): AsyncGenerator<StoreObject>;
  /** Requests made by list() so far. */
  readonly listRequests: number;
  /** Whether credentials were found; false means anonymous reads of public objects. */
  readonly signed: boolean;
}

/** Where the credentials come from, for the hint after an authorization failure. */
export const CREDENTIAL_HINT = {
  s3: 'check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), AWS_REGION and AWS_ENDPOINT_URL',
  azure: 'check AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN',
} as const;

const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|ECONNABORTED|UND_ERR_\w+|TimeoutError|REQUEST_SEND_ERROR)$/;

function findCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown; errors?: unknown } | undefined, i = 0; e && i < 8; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'string' && NETWORK_CODES.test(e.code)) return e.code;
    if (Array.isArray(e.errors)) for (const x of e.errors) if (typeof x?.code === 'string' && NETWORK_CODES.test(x.code)) return x.code;
  }
  return undefined;
}

/**
 * One vendor failure as a CosiError: `what` says what we tried (never with a
 * secret), `status` and `vendorCode` come from the SDK's error object.
 */
export function storeFailure(err: unknown, what: string, status: number | undefined, vendorCode: string | undefined, hint: string): CosiError {
  if (err instanceof CosiError) return err;
  const net = findCode(err);
  if (net && status === undefined) {
    // In words from the shared table, as every other network failure is; the SDK's own codes get ours.
    if (errnoOf({ code: net })) return systemError(`${what}: cannot reach the store`, { code: net });
    const words = /^UND_ERR_\w*TIMEOUT$|^TimeoutError$/.test(net) ? 'no answer in time' : 'the request did not get through';
    return new CosiError('COSI_ERR_NETWORK', `${what}: cannot reach the store: ${words}`, { details: { code: net } });
  }
  const code = vendorCode && /^[A-Za-z][\w.]{0,63}$/.test(vendorCode) ? ` ${vendorCode}` : '';
  if (status === 401 || status === 403) {
    return new CosiError('COSI_ERR_HTTP_STATUS', `${what}: access denied (HTTP ${status}${code}): ${hint}`, { details: { status } });
  }
  if (status === 404) return new CosiError('COSI_ERR_HTTP_STATUS', `${what}: not found (HTTP 404${code})`, { details: { status } });
  if (status !== undefined) return new CosiError('COSI_ERR_HTTP_STATUS', `${what}: the store answered HTTP ${status}${code}`, { details: { status } });
  return new CosiError('COSI_ERR_NETWORK', `${what}: the store request failed${code ? ` (${code.trim()})` : ''}`);
}
