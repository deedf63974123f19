/**
 * Validators (ETag, Last-Modified): the first response pins them, and every
 * later response must agree, so that a file replaced on the server mid-transfer
 * is refused instead of spliced from two versions.
 */
import type { Dispatcher } from 'undici';
import type { CosiError } from '../../errors.js';
import { etagMatches, isStrongEtag, parseHttpDate } from '../range.js';
import { fail } from './failures.js';
import { header } from './response.js';

/** What the first response said about the representation; later responses must agree. */
export interface Validator {
  etag?: string;
  lastModified?: string;
}

function sameEtag(a: string, b: string): boolean {
  // Weak comparison: a server may mark the same tag weak on one response only (compression modules do).
  return a === b || etagMatches(a, b, { weak: true });
}

function sameDate(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseHttpDate(a);
  return x !== undefined && x === parseHttpDate(b);
}

/** The If-Range value for a pinned validator: a strong ETag, else the date. */
export function ifRangeValue(v: Validator | undefined): string | undefined {
  return v ? (isStrongEtag(v.etag) ? v.etag : v.lastModified) : undefined;
}

/** A 200 answered to If-Range: the same version (the server just ignores ranges), or how it changed. */
export function versionChange(v: Validator, headers: Dispatcher.ResponseData['headers']): string | undefined {
  const et = header(headers, 'etag');
  const lm = header(headers, 'last-modified');
  const sameVersion = (v.etag && et && sameEtag(v.etag, et)) || (!v.etag && v.lastModified && lm && sameDate(v.lastModified, lm));
  if (sameVersion) return undefined;
  return v.etag && et ? `ETag ${v.etag} -> ${et}` : v.lastModified && lm ? `Last-Modified ${v.lastModified} -> ${lm}` : 'answered 200 to If-Range';
}

export function sourceChanged(name: string, how: string): CosiError {
  return fail('COSI_ERR_SOURCE_CHANGED', `${name} changed on the server during the transfer (${how}); refusing to splice two versions`, 'never');
}

/**
 * Pin the first validator seen; refuse any later response that contradicts it.
 * Returns the validator it pinned just now, if any.
 */
export function checkValidator(ep: { readonly name: string; validator: Validator | undefined }, headers: Dispatcher.ResponseData['headers']): Validator | undefined {
  const etag = header(headers, 'etag');
  const lastModified = header(headers, 'last-modified');
  const pinned = ep.validator;
  if (!pinned) {
    if (etag !== undefined || lastModified !== undefined) {
      ep.validator = { ...(etag !== undefined ? { etag } : {}), ...(lastModified !== undefined ? { lastModified } : {}) };
      return ep.validator;
    }
    return undefined;
  }
  if (pinned.etag !== undefined && etag !== undefined) {
    if (!sameEtag(pinned.etag, etag)) throw sourceChanged(ep.name, `ETag ${pinned.etag} -> ${etag}`);
    return undefined;
  }
  if (pinned.lastModified !== undefined && lastModified !== undefined && !sameDate(pinned.lastModified, lastModified)) {
    throw sourceChanged(ep.name, `Last-Modified ${pinned.lastModified} -> ${lastModified}`);
  }
  return undefined;
}
