/**
 * Remote catalog entries as the user writes them: `URL` or `NAME=URL`, on
 * the command line or one per line in a list file. The id a remote is listed
 * under follows the same rules as a local file's (safe '/'-separated
 * segments), so every route treats local and remote ids alike.
 */
import { readFile } from 'node:fs/promises';
import { CosiError } from '../../shared/errors.js';
import { safeSegments } from './ids.js';
import { COSI_EXT } from './scanner.js';
import { systemError } from '../../shared/errno.js';

/** One remote archive: the catalog id it is listed under and its URL. */
export interface RemoteSpec {
  id: string;
  url: string;
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
  const named = /^([^=\s]+)=(https?:\/\/\S+)$/i.exec(s);
  const rawUrl = named ? named[2]! : s;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw usage(where, `not a URL: ${JSON.stringify(rawUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage(where, `remote archives are http(s) URLs, got ${url.protocol}//...`);
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
    const earlier = seen.get(spec.id);
    if (earlier !== undefined) throw usage(`${file}:${i + 1}`, `the id ${JSON.stringify(spec.id)} is already used on line ${earlier}`);
    seen.set(spec.id, i + 1);
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
