/**
 * A URL that answered with something other than a COSI file (a catalog page,
 * an API answer): what it is, and where the image is instead, read from the
 * answer itself: cosi-server's JSON names each image's file (`rawUrl`), and
 * a web page links the .cosi files it lists.
 */
import { CosiError, isCosiError } from '../shared/errors.js';
import type { HttpSourceOptions } from '../shared/transport/http/options.js';
import { HttpSource } from '../shared/transport/http/source.js';

/** Enough of a page to find its links; a catalog page of 1,000 images is about 1 MiB. */
const MAX_PAGE_BYTES = 2 << 20;

async function readPage(url: string, opts: HttpSourceOptions): Promise<string | undefined> {
  const src = new HttpSource(url, { ...opts, retries: 0, onEvent: undefined });
  try {
    const { body } = await src.openFull();
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      parts.push(chunk);
      n += chunk.length;
      if (n >= MAX_PAGE_BYTES) break;
    }
    body.destroy();
    return Buffer.concat(parts).toString('utf8');
  } catch {
    return undefined;
  } finally {
    await src.close();
  }
}

/** Where the image is, from cosi-server's JSON: a record has `rawUrl`, the list has `images[].rawUrl`. */
function fromJson(text: string, base: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const o = doc as { id?: unknown; rawUrl?: unknown; images?: unknown };
  if (typeof o.rawUrl === 'string') {
    return `it is cosi-server's record of image ${JSON.stringify(o.id ?? '')}; the image itself is at ${new URL(o.rawUrl, base).href}`;
  }
  const files = catalogFiles(o, base);
  if (files) return `it is cosi-server's catalog of ${files.count} image(s); give one image's file URL, e.g. ${files.first}`;
  return undefined;
}

/** cosi-server's list (`/v1/images`): how many images, and the first one's file URL. */
function catalogFiles(doc: { images?: unknown }, base: string): { count: number; first: string } | undefined {
  if (!Array.isArray(doc.images)) return undefined;
  const files = doc.images.flatMap((i: { rawUrl?: unknown }) => (typeof i?.rawUrl === 'string' ? [new URL(i.rawUrl, base).href] : []));
  return files.length > 0 ? { count: doc.images.length, first: files[0]! } : undefined;
}

/** Which of cosi-server's other endpoints answered, by its text: /metrics, /healthz, /openapi.json. */
function serverEndpoint(text: string): string | undefined {
  if (/^# (HELP|TYPE) cosi_/m.test(text)) return "cosi-server's Prometheus metrics";
  try {
    const o = JSON.parse(text) as { status?: unknown; images?: unknown; openapi?: unknown; info?: { title?: unknown } };
    if (typeof o.status === 'string' && typeof o.images === 'number') return "cosi-server's health check";
    if (typeof o.openapi === 'string' && typeof o.info?.title === 'string' && /cosi/i.test(o.info.title)) return "cosi-server's API description";
  } catch {
    // Not JSON.
  }
  return undefined;
}

/** For an answer from another cosi-server endpoint: which image URL to use, from the server's own list. */
async function fromServerEndpoint(text: string, url: string, opts: HttpSourceOptions): Promise<string | undefined> {
  const endpoint = serverEndpoint(text);
  if (!endpoint) return undefined;
  const listUrl = new URL('/v1/images', url).href;
  const list = await readPage(listUrl, opts);
  let files: ReturnType<typeof catalogFiles>;
  try {
    files = list === undefined ? undefined : catalogFiles(JSON.parse(list) as { images?: unknown }, url);
  } catch {
    files = undefined;
  }
  return `it is ${endpoint}, not an image; ${files ? `give one image's file URL, e.g. ${files.first}` : `the server lists its images at ${listUrl}`}`;
}

/** The .cosi files a page links (href, or URLs in its copyable commands), absolute and unique. */
function fromHtml(text: string, base: string): string | undefined {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?:https?:\/\/|\/)[^\s"'<>`]*?\.cosi(?=["'<>\s`?#]|$)/g)) {
    try {
      found.add(new URL(m[0].replace(/&amp;/g, '&'), base).href);
    } catch {
      // Not a URL after all.
    }
  }
  if (found.size === 0) return undefined;
  const first = [...found][0]!;
  return found.size === 1 ? `the page links one image: ${first}` : `the page links ${found.size} .cosi files; give one of them, e.g. ${first}`;
}

function isMetadata(text: string): boolean {
  try {
    const o = JSON.parse(text) as { version?: unknown; images?: unknown };
    return typeof o.version === 'string' && Array.isArray(o.images);
  } catch {
    return false;
  }
}

/**
 * `err` unchanged unless it says `url` is no COSI file; then the same error
 * with what the URL answered and, when the answer names it, the URL to use.
 */
export async function explainWrongUrl(url: string, err: unknown, opts: HttpSourceOptions): Promise<unknown> {
  if (!isCosiError(err, 'COSI_ERR_NOT_COSI') || !/^https?:\/\//i.test(url)) return err;
  const page = await readPage(url, opts);
  if (page === undefined) return err;
  const trimmed = page.trimStart();
  let hint = trimmed.startsWith('{') || trimmed.startsWith('[') ? fromJson(trimmed, url) : fromHtml(page, url);
  if (!hint && isMetadata(trimmed)) {
    // cosi-server's /v1/images/ID/metadata.json: its record, one level up, names the archive.
    const record = url.endsWith('/metadata.json') ? await readPage(url.slice(0, -'/metadata.json'.length), opts) : undefined;
    const where = record === undefined ? undefined : fromJson(record, url)?.replace(/^.*; the image itself is at /, '');
    hint = `it is a COSI metadata.json, not the archive${where ? `; the archive is at ${where}` : ''}`;
  }
  hint ??= await fromServerEndpoint(trimmed, url, opts);
  if (!hint) return err;
  return new CosiError('COSI_ERR_NOT_COSI', `${err.message}; ${hint}`, { cause: err, details: err.details });
}
