/**
 * Request paths become catalog keys here, and nothing else: a path is split
 * into segments, each decoded once and checked, and the result is only ever
 * looked up in the index. Segments that could mean something to a
 * filesystem (empty, '.', '..', an encoded slash or backslash, NUL) are
 * refused outright, so no request can even name a file outside the catalog.
 */

/** Decoded segments of `raw` (no leading slash), or undefined when any segment is unsafe. */
export function safeSegments(raw: string): string[] | undefined {
  if (raw === '') return [];
  const out: string[] = [];
  for (const part of raw.split('/')) {
    let s: string;
    try {
      s = decodeURIComponent(part);
    } catch {
      return undefined;
    }
    if (s === '' || s === '.' || s === '..' || /[/\\\0]/.test(s)) return undefined;
    out.push(s);
  }
  return out;
}

/** The path of a request URL after `prefix`, still percent-encoded; undefined when it does not start so. */
export function rawPathAfter(url: string, prefix: string): string | undefined {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  const q = url.indexOf('?', start);
  const path = url.slice(start, q < 0 ? undefined : q);
  return path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
}

/** Percent-encode an id or relative path for a URL, keeping its slashes. */
export function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}
