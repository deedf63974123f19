/**
 * What went wrong with a request and what to do about it: every failure
 * becomes a one-line CosiError with a retry decision (try again, move to the
 * next mirror, or give up).
 */
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import { CosiError, type ErrorCode } from '../../errors.js';
import { errnoText, systemError } from '../../errno.js';
import { parseHttpDate } from '../range.js';
import { header } from './response.js';

// Required, not imported: an ESM import of node:http builds its facade by reading every
// export, which loads Node's bundled undici (20 ms of start-up) for one status table.
const { STATUS_CODES } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export type Retry = 'again' | 'mirror' | 'never';
// How to react to an error we raised ourselves, kept off the error so `details` stays user-facing.
const retryPolicy = new WeakMap<CosiError, Retry>();

export function fail(code: ErrorCode, message: string, retry: Retry, extra?: { cause?: unknown; details?: Record<string, unknown> }): CosiError {
  const err = new CosiError(code, message, extra);
  retryPolicy.set(err, retry);
  return err;
}

/** Every error code along the cause chain (undici wraps socket errors; connects may fail with AggregateError). */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  const visit = (e: unknown): void => {
    if (!e || typeof e !== 'object' || seen.has(e) || seen.size > 16) return;
    seen.add(e);
    const o = e as { code?: unknown; cause?: unknown; errors?: unknown; name?: unknown };
    if (typeof o.code === 'string') codes.push(o.code);
    if (o.name === 'AbortError') codes.push('ABORT_ERR');
    visit(o.cause);
    if (Array.isArray(o.errors)) o.errors.forEach(visit);
  };
  visit(err);
  return codes;
}

const TLS_CODE = /^(CERT_|ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_|HOSTNAME_MISMATCH$|ERR_OSSL_)/;

/** OpenSSL's reason out of its "error:0A00010B:SSL routines:ssl3_get_record:wrong version number:FILE:LINE:" text. */
function tlsReason(detail: string): string {
  return /SSL routines:[^:]*:([^:]+)/.exec(detail)?.[1] ?? detail;
}

/** Turn anything a request can throw into a one-line CosiError and a retry decision. */
export function classify(err: unknown, what: string, idleMs: number): { error: CosiError; retry: Retry } {
  if (err instanceof CosiError) return { error: err, retry: retryPolicy.get(err) ?? 'never' };
  const codes = errorCodes(err);
  const detail = err instanceof Error ? err.message : String(err);
  const tls = codes.find((c) => TLS_CODE.test(c));
  if (tls) {
    const words = errnoText(tls);
    const text = words ? describeTls(tls) : tlsReason(detail);
    return { error: fail('COSI_ERR_TLS', `${what}: TLS error: ${text}`, 'mirror', { cause: err, details: { code: tls } }), retry: 'mirror' };
  }
  const timeout = (code: string, text: string) => ({
    error: fail('COSI_ERR_TIMEOUT', `${what}: ${text}`, 'again', { cause: err, details: { code } }),
    retry: 'again' as const,
  });
  if (codes.includes('UND_ERR_CONNECT_TIMEOUT')) return timeout('UND_ERR_CONNECT_TIMEOUT', 'connect timed out');
  if (codes.includes('UND_ERR_HEADERS_TIMEOUT')) return timeout('UND_ERR_HEADERS_TIMEOUT', `no response within ${idleMs} ms`);
  if (codes.includes('UND_ERR_BODY_TIMEOUT')) return timeout('UND_ERR_BODY_TIMEOUT', `no data for ${idleMs} ms (stalled)`);
  if (codes.includes('ETIMEDOUT')) return timeout('ETIMEDOUT', 'timed out');
  if (codes.includes('ABORT_ERR') || codes.includes('UND_ERR_ABORTED')) {
    return { error: fail('COSI_ERR_NETWORK', `${what}: aborted`, 'never', { cause: err }), retry: 'never' };
  }
  const known = codes.find((c) => errnoText(c) !== undefined);
  const text = known ? errnoText(known)! : detail;
  // An unknown host name is a typo far more often than a blip (EAI_AGAIN is the blip): no waiting on it.
  const retry: Retry = known === 'ENOTFOUND' ? 'mirror' : 'again';
  return { error: fail('COSI_ERR_NETWORK', `${what}: ${text}`, retry, { cause: err, details: { code: known ?? codes[0] } }), retry };
}

/** A TLS code's words and what to do, from the shared table. */
function describeTls(code: string): string {
  const e = systemError('', { code });
  return e.message.replace(/^: /, '');
}

function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = parseHttpDate(value);
  return at === undefined ? undefined : Math.max(0, at - Date.now());
}

/** The error for a response whose status is not what the request wanted. */
export function statusError(what: string, res: Dispatcher.ResponseData): CosiError {
  const status = res.statusCode;
  const text = res.statusText || STATUS_CODES[status] || '';
  // 5xx, 408 and 429 are the server's trouble and may pass; other 4xx will not change on retry.
  const transient = status >= 500 || status === 408 || status === 429;
  const wait = transient ? retryAfterMs(header(res.headers, 'retry-after')) : undefined;
  return fail('COSI_ERR_HTTP_STATUS', `${what}: ${status}${text ? ` ${text}` : ''}`, transient ? 'again' : 'mirror', {
    details: { status, ...(wait !== undefined ? { retryAfterMs: wait } : {}) },
  });
}
