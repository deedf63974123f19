/**
 * RFC 9110 §13.2.2 preconditions of a GET or HEAD, in the RFC's order:
 * If-Match, else If-Unmodified-Since (412 when false); If-None-Match, else
 * If-Modified-Since (304 when false). Range and If-Range come after, in the
 * caller. One function for every byte endpoint and ?decompress=1, so each
 * condition is refused alike wherever bytes are served.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { etagMatches, parseHttpDate } from '../../shared/transport/range.js';

export interface Validators {
  /** Strong and quoted; absent when the representation has none (If-Match then only matches `*`). */
  etag?: string;
  lastModified: Date;
}

export type Verdict = { status: 412; message: string } | { status: 304 } | undefined;

function one(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Whole seconds: HTTP dates carry no finer time, and Last-Modified is sent rounded down. */
const seconds = (d: Date): number => Math.floor(d.getTime() / 1000) * 1000;

/** What the preconditions decide: 412, 304, or nothing (go on and serve). */
export function evaluatePreconditions(headers: IncomingHttpHeaders, v: Validators): Verdict {
  const ifMatch = one(headers, 'if-match');
  if (ifMatch !== undefined) {
    // §13.1.1: `*` is true for any current representation; otherwise a strong match is needed.
    const ok = ifMatch.trim() === '*' || (v.etag !== undefined && etagMatches(ifMatch, v.etag, { weak: false }));
    if (!ok) return { status: 412, message: 'If-Match does not match the current ETag' };
  } else {
    // §13.1.4: ignored beside If-Match and when not a valid HTTP-date; true when not modified since.
    const ius = one(headers, 'if-unmodified-since');
    const t = ius === undefined ? undefined : parseHttpDate(ius);
    if (t !== undefined && seconds(v.lastModified) > t) {
      return { status: 412, message: `modified since ${ius!.trim()} (Last-Modified ${v.lastModified.toUTCString()})` };
    }
  }
  const inm = one(headers, 'if-none-match');
  if (inm !== undefined) return inm.trim() === '*' || (v.etag !== undefined && etagMatches(inm, v.etag, { weak: true })) ? { status: 304 } : undefined;
  const ims = one(headers, 'if-modified-since');
  const t = ims === undefined ? undefined : parseHttpDate(ims);
  return t !== undefined && seconds(v.lastModified) <= t ? { status: 304 } : undefined;
}
