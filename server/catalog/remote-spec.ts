/**
 * Remote catalog entries as the user writes them: `URL` or `NAME=URL`, on
 * the command line or one per line in a list file. The id a remote is listed
 * under follows the same rules as a local file's (safe '/'-separated
 * segments), so every route treats local and remote ids alike.
 */
import { readFile } from 'node:fs/promises';
import { CosiError } from '../../shared/errors.js';
import { isStoreUrl, parseStoreUrl, storeUrl } from '../../shared/transport/store/url.js';
import { safeSegments } from './ids.js';
import { COSI_EXT } from './scanner.js';
import { systemError } from '../../shared/errno.js';

/** One remote archive: the catalog id it is listed under and its URL; or a store prefix to list. */
export interface RemoteSpec {
  /** For a prefix: '' or the NAME its ids are listed under. */
  id: string;
  url: string;
  /** s3://BUCKET[/PREFIX] or az://CONTAINER[/PREFIX]: every *.cosi object under it, ids relative to it. */
  prefix?: boolean;
  /** Objects from a prefix's listing: what the store said (ETag, size), and the prefix's URL. */
  listed?: { size: number; etag: string; lastModified?: string };
  from?: string;
}

/** What makes two specs the same entry: an archive's id, a prefix's URL. */
export function specKey(s: RemoteSpec): string {
  return s.prefix ? `prefix ${s.url}` : s.id;
}

/** An object-store URL: one archive when it ends in .cosi, else a prefix to list. */
function storeSpec(name: string | undefined, rawUrl: string, where: string): RemoteSpec {
  let loc;
  try {
    loc = parseStoreUrl(rawUrl);
  } catch (err) {
    throw usage(where, (err as Error).message);
  }
  if (name !== undefined && name.endsWith(COSI_EXT)) name = name.slice(0, -COSI_EXT.length);
  if (loc.key.endsWith(COSI_EXT)) {
    const segs = safeSegments(name ?? loc.key.slice(0, -COSI_EXT.length));
    if (!segs || segs.length === 0) throw usage(where, `cannot make an image id from ${JSON.stringify(loc.key)}: name it with NAME=URL`);
    return { id: checkId(segs.join('/'), where, name ? 'the name' : 'the id'), url: storeUrl(loc) };
  }
  const key = loc.key === '' || loc.key.endsWith('/') ? loc.key : `${loc.key}/`;
  return { id: name === undefined ? '' : checkId(name, where, 'the name'), url: storeUrl(loc, key), prefix: true };
}

function usage(where: string, message: string): CosiError {
  return new CosiError('COSI_ERR_USAGE', `${where}: ${message}`);
}

function checkId(id: string, where: string, what: string): string {
  const segs = safeSegments(id);
  if (!segs || segs.length === 0 || segs.join('/') !== id) throw usage(where, `${what} ${JSON.stringify(id)} is not a usable image id (plain '/'-separated names)`);
  return id;
}

/** `URL` (id: the URL's path without .cosi) or `NAME=URL`. */
export function parseRemoteSpec(text: string, where: string): RemoteSpec {
  const s = text.trim();
  // The URL itself may hold '=' in its query: only a prefix before 'http(s)://' is a name.
  const named = /^([^=\s]+)=((?:https?|s3|az):\/\/\S+)$/i.exec(s);
  const rawUrl = named ? named[2]! : s;
  if (isStoreUrl(rawUrl) || /^(s3|az):/i.test(rawUrl)) return storeSpec(named?.[1], rawUrl, where);
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw usage(where, `not a URL: ${JSON.stringify(rawUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage(where, `remote archives are http(s), s3:// or az:// URLs, got ${url.protocol}//...`);
  if (url.hash) throw usage(where, `a remote URL has no #fragment: ${JSON.stringify(rawUrl)}`);
  if (named) {
    let name = named[1]!;
    if (name.endsWith(COSI_EXT)) name = name.slice(0, -COSI_EXT.length);
    return { id: checkId(name, where, 'the name'), url: url.href };
  }
  const path = url.pathname.replace(/^\/+/, '');
  if (!path.endsWith(COSI_EXT)) throw usage(where, `${url.origin}${url.pathname} does not end in .cosi: name it with NAME=URL`);
  const segs = safeSegments(path.slice(0, -COSI_EXT.length));
  if (!segs || segs.length === 0) throw usage(where, `cannot make an image id from ${JSON.stringify(url.pathname)}: name it with NAME=URL`);
  return { id: checkId(segs.join('/'), where, 'the id'), url: url.href };
}

/** Every entry of a list file; blank lines and '#' comments are skipped. */
export function parseRemoteList(text: string, file: string): RemoteSpec[] {
  const out: RemoteSpec[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const spec = parseRemoteSpec(t, `${file}:${i + 1}`);
    const earlier = seen.get(specKey(spec));
    if (earlier !== undefined) throw usage(`${file}:${i + 1}`, `${spec.prefix ? `the prefix ${spec.url}` : `the id ${JSON.stringify(spec.id)}`} is already used on line ${earlier}`);
    seen.set(specKey(spec), i + 1);
    out.push(spec);
  });
  return out;
}

export async function readRemoteList(file: string): Promise<RemoteSpec[]> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw systemError(`cannot read the remote list ${file}`, err, { code: 'COSI_ERR_IO' });
  });
  return parseRemoteList(text, file);
}
