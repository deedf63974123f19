/**
 * The fallback for servers that ignore Range (python's http.server is one):
 * one plain GET of the whole archive, read front to back with tar-stream,
 * taking the wanted images as they pass and discarding the rest. Every byte
 * of the archive crosses the network, so the caller warns about bandwidth.
 *
 * Images go through the same checks as the ranged path: SHA-384 over the
 * compressed bytes, a size-capped zstd decode, and the hash compared before
 * the stream ends. The archive is held to the same rules too, as far as a
 * front-to-back reader can: the metadata rules before any image, the GPT
 * rules before any partition, and the tar rules (duplicate members, order)
 * once the pass reaches the end of the archive, before the caller commits.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as tar from 'tar-stream';
import { hasMarker, notCosiFile, sniff, startsLikeCosi } from '../shared/format/archive.js';
import { windowLogOf } from '../shared/format/check.js';
import { CosiError } from '../shared/errors.js';
import { parseGpt, type Gpt } from '../shared/disk/gpt.js';
import type { HttpSource } from '../shared/transport/http/source.js';
import { MAX_METADATA_BYTES, metadataTooLarge, parseMetadata, primaryGptRegion, type CosiMetadata, type ImageFile } from '../shared/format/metadata.js';
import { refuseInvalid } from '../shared/format/check.js';
import { MAX_ENTRIES, type TarEntry, type TarEntryType } from '../shared/format/tar.js';
import { validateCosi, type ValidateInput } from '../shared/format/validate.js';
import { createZstdDecoder } from '../shared/zstd/index.js';
import { HashTap } from './image-stream.js';
import { assertPinned } from './image.js';

export interface SequentialHandlers {
  /** metadata.json has passed (raw bytes hashed, parsed); throw to stop before any image. */
  onMetadata(meta: CosiMetadata, sha384: string): void | Promise<void>;
  /** The primary GPT has passed and parsed. */
  onGpt?(gpt: Gpt, primary: Buffer): void | Promise<void>;
  /** Where an image's decoded bytes go; undefined to skip it. */
  sinkFor(image: ImageFile): Writable | undefined | Promise<Writable | undefined>;
  onCompressed?(image: ImageFile, n: number): void;
  /** True once nothing more is wanted: the transfer stops early, and the tar rules go unchecked. */
  done?(): boolean;
  /** One line per rule the archive breaks without being refused (each once). */
  onWarning?(line: string): void;
}

export interface SequentialOptions {
  /** Refuse a metadata.json larger than this before reading it (default 4 MiB). */
  maxMetadataBytes?: number;
  /** Refuse the archive unless metadata.json has this SHA-384 (lower-case hex). */
  metadataSha384?: string;
}

const TYPES: Readonly<Record<string, TarEntryType>> = { file: 'file', 'contiguous-file': 'file', directory: 'directory', symlink: 'symlink', link: 'hardlink' };

/** What the tar rules need of an entry tar-stream has passed (offsets are not known here, nor needed). */
function entryOf(header: tar.Header, at: number): TarEntry {
  const type = TYPES[header.type ?? 'file'] ?? 'other';
  return { name: header.name, type, typeflag: '', headerOffset: at, ustarOffset: at, dataOffset: at, size: header.size ?? 0, mode: header.mode ?? 0, mtime: 0 };
}

/** 'drain', or the extract going away: once() alone would wait forever on a destroyed stream. */
function drainedOrClosed(extract: tar.Extract): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      extract.off('drain', done);
      extract.off('close', done);
      resolve();
    };
    extract.on('drain', done);
    extract.on('close', done);
  });
}

/** What a body that is no COSI file is, for people: sniff's kind, or text or data, and the Content-Type. */
function answerKind(head: Buffer, contentType: string | undefined): string {
  let kind = sniff(head);
  if (kind === 'not a COSI archive') {
    const text = head.subarray(0, 512).toString('utf8');
    kind = /^[\t\n\r\x20-\x7e\u00a0-\uffff]*$/.test(text) && !text.includes('\ufffd') ? 'text' : 'data that is no archive';
  }
  return contentType ? `${kind} (${contentType})` : kind;
}

async function feed(body: Readable, extract: tar.Extract, start: { marker: boolean }, answer: { url: string; contentType?: string }): Promise<void> {
  let first = true;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (first) {
      first = false;
      start.marker = hasMarker(b);
      if (!startsLikeCosi(b)) {
        // Said before any "no Range support" warning: the URL is wrong, not the server.
        throw new CosiError('COSI_ERR_NOT_COSI', `GET ${answer.url}: answered with ${answerKind(b, answer.contentType)}, not a COSI file`, { details: { contentType: answer.contentType } });
      }
    }
    if (!extract.write(b)) await drainedOrClosed(extract);
    // Stopped early (everything wanted has passed) or failed: stop reading the body.
    if ((extract as unknown as { destroyed: boolean }).destroyed) return;
  }
  (extract as unknown as { end(): void }).end();
}

async function readAll(entry: AsyncIterable<Buffer>, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of entry) {
    n += c.length;
    if (n > limit) throw new CosiError('COSI_ERR_METADATA', `${what} is over the ${limit}-byte limit`);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/** One front-to-back pass. Returns what was seen; images are delivered through `handlers`. */
export async function sequentialPass(src: HttpSource, handlers: SequentialHandlers, opts: SequentialOptions = {}): Promise<{ metadata: CosiMetadata; gpt?: Gpt }> {
  const maxMetadataBytes = opts.maxMetadataBytes ?? MAX_METADATA_BYTES;
  const warned = new Set<string>();
  // Refuses on errors, as the ranged path does; warnings once each.
  const judge = (input: ValidateInput): void => {
    for (const w of refuseInvalid(src.name, validateCosi(input, { reader: true }))) {
      if (!warned.has(w.message)) handlers.onWarning?.(w.message);
      warned.add(w.message);
    }
  };
  const entries: TarEntry[] = [];
  // Loaded here: only a server without Range support needs it (20 ms of every start otherwise).
  const { default: tarStream } = await import('tar-stream');
  const { body, url, contentType } = await src.openFull();
  const extract = tarStream.extract();
  const start = { marker: false };
  const feeding = feed(body, extract, start, { url, contentType }).catch((err: unknown) => {
    extract.destroy(err as Error);
    throw err;
  });
  let metadata: CosiMetadata | undefined;
  let gpt: Gpt | undefined;
  let index = 0;
  const byPath = new Map<string, ImageFile>();
  const names = new Set<string>();
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      const at = index++;
      if (at >= MAX_ENTRIES) throw new CosiError('COSI_ERR_TAR', `${src.name}: archive has more than ${MAX_ENTRIES} entries`);
      entries.push(entryOf(entry.header, at));
      // A second member of a name is refused as it passes: a reader that took the last one would write other bytes.
      const seen = names.has(name);
      names.add(name);
      if (metadata && seen) {
        const dupes = validateCosi({ metadata, entries }, { reader: true }).errors.filter((i) => i.rule === 'tar-path-unique');
        refuseInvalid(src.name, { valid: false, errors: dupes, warnings: [] });
      }
      if (at === 0) {
        if (name !== 'cosi-marker') throw notCosiFile(src.name, `a tar archive whose first entry is ${name}`);
        entry.resume();
        continue;
      }
      if (at === 1) {
        if (name !== 'metadata.json') throw new CosiError('COSI_ERR_NOT_COSI', `${src.name}: second tar entry must be metadata.json, found ${name}`);
        if ((entry.header.size ?? 0) > maxMetadataBytes) throw metadataTooLarge(`${src.name}: `, entry.header.size!, maxMetadataBytes);
        const bytes = await readAll(entry as unknown as AsyncIterable<Buffer>, maxMetadataBytes, 'metadata.json');
        metadata = parseMetadata(bytes, maxMetadataBytes);
        const sha = createHash('sha384').update(bytes).digest('hex');
        // The pin before the rules: another image is refused as that, not as invalid.
        assertPinned(src.name, opts.metadataSha384, sha);
        if (!start.marker) {
          throw new CosiError('COSI_ERR_INVALID', `${src.name}: not a valid COSI archive: tar[0]: the first 11 bytes of the file must be "cosi-marker" (an extension header comes first)`);
        }
        judge({ metadata });
        await handlers.onMetadata(metadata, sha);
        for (const r of metadata.disk?.gptRegions ?? []) byPath.set(r.image.path, r.image);
        for (const f of metadata.images) {
          if (!byPath.has(f.image.path)) byPath.set(f.image.path, f.image);
          if (f.verity && !byPath.has(f.verity.image.path)) byPath.set(f.verity.image.path, f.verity.image);
        }
        continue;
      }
      const image = byPath.get(name);
      const gptRegion = primaryGptRegion(metadata!);
      const isGpt = gptRegion !== undefined && image !== undefined && gptRegion.image.path === name;
      const sink = image && !isGpt ? await handlers.sinkFor(image) : undefined;
      if (!image || (!sink && !isGpt) || entry.header.type !== 'file') {
        entry.resume();
        await once(entry, 'end').catch(() => undefined);
      } else {
        if ((entry.header.size ?? 0) !== image.compressedSize) {
          throw new CosiError('COSI_ERR_INVALID', `${name} is ${entry.header.size} bytes in the archive, metadata says ${image.compressedSize}`);
        }
        const tap = new HashTap(image, image.compressedSize, handlers.onCompressed ? (n) => handlers.onCompressed!(image, n) : undefined);
        const decoder = createZstdDecoder({ maxWindowLog: windowLogOf(metadata!), expectedSize: image.uncompressedSize });
        if (isGpt) {
          const parts: Buffer[] = [];
          await pipeline(entry as unknown as AsyncIterable<Buffer>, tap, decoder, async (s: AsyncIterable<Buffer>) => {
            for await (const c of s) parts.push(c);
          });
          const primary = Buffer.concat(parts);
          gpt = parseGpt(primary);
          judge({ metadata: metadata!, gpt });
          await handlers.onGpt?.(gpt, primary);
        } else {
          await pipeline(entry as unknown as AsyncIterable<Buffer>, tap, decoder, sink!);
        }
      }
      if (handlers.done?.()) break;
    }
    if (!metadata) throw new CosiError('COSI_ERR_TRUNCATED', `${src.name}: archive ends before metadata.json`);
    if (!handlers.done?.()) {
      await feeding;
      // The whole index has passed: now the tar rules too.
      judge({ metadata, entries, gpt });
    }
    return { metadata, gpt };
  } catch (err) {
    // The feeder's error (not COSI, connection lost) explains a failed extract better than the extract does.
    if (err instanceof CosiError) throw err;
    body.destroy();
    extract.destroy();
    const fedErr = await feeding.then(() => undefined, (e: unknown) => e);
    throw fedErr ?? err;
  } finally {
    body.destroy();
    extract.destroy();
    await feeding.catch(() => undefined);
  }
}
