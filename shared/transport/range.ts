/**
 * Byte ranges and validators (RFC 9110 §13-§14), as pure functions shared by
 * the server (answering Range/If-Range/If-None-Match) and the client (reading
 * Content-Range). No I/O here, so every edge case is cheap to test.
 */

export interface ByteRange {
  start: number;
  /** Inclusive, as on the wire. */
  end: number;
}

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'ranges'; ranges: ByteRange[] }
  | { kind: 'unsatisfiable' }
  /** Malformed, a unit other than bytes, or over the cap: serve the whole representation with 200. */
  | { kind: 'ignore' };

/** Above this many range-specs a request is answered with one 200 (a cheap guard against range floods). */
export const DEFAULT_MAX_RANGES = 64;

const DIGITS = /^[0-9]+$/;
// RFC 9110 OWS: spaces and horizontal tabs only.
const OWS = /^[ \t]+|[ \t]+$/g;

type Spec = { first: string; last: string } | { suffix: string };

function parseSpec(text: string): Spec | undefined {
  const dash = text.indexOf('-');
  if (dash < 0) return undefined;
  const first = text.slice(0, dash);
  const last = text.slice(dash + 1);
  if (first === '') return DIGITS.test(last) ? { suffix: last } : undefined;
  if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return undefined;
  // Compare as BigInt: digit strings beyond 2^53 would round and could hide last < first.
  if (last !== '' && BigInt(last) < BigInt(first)) return undefined;
  return { first, last };
}

/**
 * Parse a Range header against a representation of `size` bytes.
 * Ranges are clamped to the representation; ranges starting at or past its
 * end are dropped, and if none remain the request is unsatisfiable (416).
 * With more than two ranges, overlapping or adjacent ones are coalesced
 * (sorted), since many small or overlapping ranges are a known amplification
 * attack (RFC 9110 §14.2 lets a server do so).
 */
export function parseRangeHeader(header: string | undefined, size: number, opts: { maxRanges?: number } = {}): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const value = header.replace(OWS, '');
  if (value === '') return { kind: 'none' };
  const eq = value.indexOf('=');
  if (eq < 0) return { kind: 'ignore' };
  // The range unit is case-insensitive; an unknown unit means "ignore the header".
  if (value.slice(0, eq).toLowerCase() !== 'bytes') return { kind: 'ignore' };
  // Empty list elements ("0-1,,2-3") are legal list syntax and are skipped (RFC 9110 §5.6.1.2).
  const parts = value.slice(eq + 1).split(',').map((p) => p.replace(OWS, '')).filter((p) => p !== '');
  if (parts.length === 0) return { kind: 'ignore' };
  if (parts.length > (opts.maxRanges ?? DEFAULT_MAX_RANGES)) return { kind: 'ignore' };

  const specs: Spec[] = [];
  for (const p of parts) {
    const spec = parseSpec(p);
    if (!spec) return { kind: 'ignore' };
    specs.push(spec);
  }

  const ranges: ByteRange[] = [];
  for (const spec of specs) {
    if ('suffix' in spec) {
      const n = Number(spec.suffix);
      if (n === 0 || size === 0) continue; // a zero-length suffix selects nothing
      ranges.push({ start: Math.max(0, size - n), end: size - 1 });
    } else {
      const start = Number(spec.first);
      if (start >= size) continue;
      const end = spec.last === '' ? size - 1 : Math.min(Number(spec.last), size - 1);
      ranges.push({ start, end });
    }
  }
  if (ranges.length === 0) return { kind: 'unsatisfiable' };
  return { kind: 'ranges', ranges: ranges.length > 2 ? coalesce(ranges) : ranges };
}

/** Sort and merge ranges that overlap or touch. */
export function coalesce(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start || a.end - b.end);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

export function formatContentRange(start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`;
}

/** For a 416 response: tells the client the current size. */
export function unsatisfiedContentRange(size: number): string {
  return `bytes */${size}`;
}

const CONTENT_RANGE = /^bytes[ \t]+([0-9]+)-([0-9]+)\/([0-9]+|\*)$/i;
const UNSATISFIED_RANGE = /^bytes[ \t]+\*\/([0-9]+)$/i;

/** `bytes a-b/size` or `bytes a-b/*`; undefined when malformed or inconsistent. */
export function parseContentRange(header: string | undefined): { start: number; end: number; size: number | undefined } | undefined {
  if (header === undefined) return undefined;
  const m = CONTENT_RANGE.exec(header.trim());
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const size = m[3] === '*' ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  if (size !== undefined && (!Number.isSafeInteger(size) || end >= size)) return undefined;
  return { start, end, size };
}

/** The size from a 416's `bytes *\/size`, if present. */
export function parseUnsatisfiedContentRange(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const m = UNSATISFIED_RANGE.exec(header.trim());
  if (!m) return undefined;
  const size = Number(m[1]);
  return Number.isSafeInteger(size) ? size : undefined;
}

interface EntityTag {
  weak: boolean;
  opaque: string;
}

/** One entity-tag (`"x"` or `W/"x"`), or undefined when malformed. */
export function parseEntityTag(text: string): EntityTag | undefined {
  const list = parseEntityTagList(text);
  return list !== '*' && list?.length === 1 ? list[0] : undefined;
}

/**
 * `*` or a comma list of entity-tags. Tokenised rather than split on commas,
 * because a comma is a legal character inside an opaque tag.
 */
function parseEntityTagList(text: string): EntityTag[] | '*' | undefined {
  const s = text.trim();
  if (s === '*') return '*';
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
    if (i >= s.length) break;
    let weak = false;
    if (s.startsWith('W/', i)) {
      weak = true;
      i += 2;
    }
    if (s[i] !== '"') return undefined;
    const close = s.indexOf('"', i + 1);
    if (close < 0) return undefined;
    tags.push({ weak, opaque: s.slice(i + 1, close) });
    i = close + 1;
    // After a tag only OWS and a comma may follow.
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i < s.length && s[i] !== ',') return undefined;
  }
  return tags.length > 0 ? tags : undefined;
}

/**
 * Does a conditional header's entity-tag list match `etag`?
 * `weak: true` is If-None-Match's weak comparison (`*` matches, W/ ignored);
 * `weak: false` is the strong comparison If-Range needs: both tags strong and
 * identical, so a weak validator never matches.
 */
export function etagMatches(header: string, etag: string, opts: { weak: boolean }): boolean {
  const current = parseEntityTag(etag);
  if (!current) return false;
  const list = parseEntityTagList(header);
  if (list === undefined) return false;
  if (list === '*') return opts.weak;
  if (opts.weak) return list.some((t) => t.opaque === current.opaque);
  return !current.weak && list.some((t) => !t.weak && t.opaque === current.opaque);
}

/** True for a strong entity-tag (`"x"`), the only kind If-Range may carry. */
export function isStrongEtag(etag: string | undefined): etag is string {
  const t = etag === undefined ? undefined : parseEntityTag(etag);
  return t !== undefined && !t.weak;
}

/**
 * RFC 9110 §13.1.5: may the server answer Range with 206 given this If-Range?
 * An absent If-Range allows it. An entity-tag must strongly match. An HTTP-date
 * must equal Last-Modified exactly, and only counts when Last-Modified is a
 * strong validator: the second it names has fully passed (`now`), so the file
 * cannot have changed twice within it unnoticed.
 */
export function ifRangeAllows(ifRange: string | undefined, etag: string | undefined, lastModified: Date | undefined, now: Date = new Date()): boolean {
  if (ifRange === undefined) return true;
  const value = ifRange.trim();
  if (value === '') return true;
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tag = parseEntityTag(value);
    return tag !== undefined && etag !== undefined && etagMatches(value, etag, { weak: false });
  }
  if (!lastModified) return false;
  const date = parseHttpDate(value);
  if (date === undefined) return false;
  const lmSeconds = Math.floor(lastModified.getTime() / 1000);
  if (date / 1000 !== lmSeconds) return false;
  return now.getTime() >= (lmSeconds + 1) * 1000;
}

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC850_DATE = /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
const ASCTIME_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * Milliseconds since the epoch for the three HTTP-date forms (RFC 9110 §5.6.7),
 * undefined otherwise. Date.parse alone would accept far more than HTTP allows.
 */
export function parseHttpDate(text: string): number | undefined {
  const s = text.trim();
  let ms: number;
  if (IMF_FIXDATE.test(s)) ms = Date.parse(s);
  else if (RFC850_DATE.test(s)) {
    // Two-digit years: RFC 9110 says interpret as the most recent past century that is not over 50 years ahead.
    const m = /-(\d{2}) /.exec(s)!;
    const yy = Number(m[1]);
    const nowYear = new Date().getUTCFullYear();
    let year = Math.floor(nowYear / 100) * 100 + yy;
    if (year > nowYear + 50) year -= 100;
    ms = Date.parse(s.replace(/^\w+, /, '').replace(/-(\d{2}) /, ` ${year} `).replace(/-/g, ' '));
  } else if (ASCTIME_DATE.test(s)) ms = Date.parse(`${s.replace(/ +/g, ' ')} GMT`);
  else return undefined;
  return Number.isFinite(ms) ? ms : undefined;
}
