/**
 * Whole-archive checks shared by `cosi-pack validate`, the server's indexer
 * and cosi-fetch: walk the headers, read metadata, decode the small
 * primary-GPT image, and hold everything against the spec; and the reader's
 * verdict on the result (which failures refuse the archive, and how).
 */
import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { completeIndex, openCosi, type CosiArchive, type OpenOptions } from './archive.js';
import { CosiError, isCosiError, oneLine } from '../errors.js';
import { parseGpt, type Gpt } from '../disk/gpt.js';
import { primaryGptRegion, type CosiMetadata, type ImageFile } from './metadata.js';
import type { ByteSource } from '../transport/source.js';
import type { TarEntry } from './tar.js';
import { validateCosi, type ValidationIssue, type ValidationResult } from './validate.js';
import { isSize } from './validate-checker.js';
import { createZstdDecoder } from '../zstd/index.js';

export interface ArchiveCheck {
  archive: CosiArchive;
  gpt?: Gpt;
  /** The decoded primary-GPT image (protective MBR, header, entries), when it could be read. */
  primary?: Buffer;
  /** Why it could not (also in `result` as 'primary-gpt-readable'), for a reader to keep its class: a hash mismatch is integrity. */
  gptFailure?: CosiError;
  result: ValidationResult;
}

export interface CheckOptions extends Pick<OpenOptions, 'headBytes' | 'window' | 'maxMetadataBytes'> {
  /** Judge as a reader: rules that bind only the writer are warnings (see validateCosi). */
  reader?: boolean;
  /** Called once metadata.json is read, before the rest of the index is walked; may throw to stop (a pin). */
  opened?: (archive: CosiArchive) => void;
}

/** Window limit for decoding: what the metadata declares, or libzstd's default when it declares nothing. */
export function windowLogOf(meta: CosiMetadata): number {
  const w = meta.compression?.maxWindowLog;
  return typeof w === 'number' && Number.isInteger(w) && w >= 10 && w <= 31 ? w : 27;
}

export function entryFor(archive: CosiArchive, path: string): TarEntry | undefined {
  return archive.index.entries.find((e) => e.name === path && e.type === 'file');
}

/**
 * Decode a small image (the primary GPT) into memory, checking its hash. One
 * read and one decoder pass: indexing a thousand archives does this a thousand times.
 */
export async function readSmallImage(src: ByteSource, entry: TarEntry, image: ImageFile, maxWindowLog: number, limit = 16 << 20): Promise<Buffer> {
  if (image.uncompressedSize > limit) throw new CosiError('COSI_ERR_INVALID', `${image.path}: ${image.uncompressedSize} bytes is too large for a GPT region`);
  const compressed = await src.read(entry.dataOffset, entry.size);
  if (compressed.length < entry.size) throw new CosiError('COSI_ERR_TRUNCATED', `${src.name}: archive ends inside ${image.path}`);
  const got = createHash('sha384').update(compressed).digest('hex');
  if (image.sha384 !== undefined && got !== image.sha384.toLowerCase()) {
    throw new CosiError('COSI_ERR_HASH_MISMATCH', `${image.path}: SHA-384 mismatch (expected ${image.sha384}, got ${got})`);
  }
  const chunks: Buffer[] = [];
  const decoder = createZstdDecoder({ maxWindowLog, expectedSize: image.uncompressedSize });
  decoder.on('data', (c: Buffer) => chunks.push(c));
  decoder.end(compressed);
  await finished(decoder);
  return Buffer.concat(chunks);
}

/** An ImageFile whose fields can be used as they are; validation reports the others. */
function usable(image: ImageFile | undefined): image is ImageFile {
  return image !== undefined && typeof image.path === 'string' && isSize(image.compressedSize) && isSize(image.uncompressedSize) && (image.sha384 === undefined || typeof image.sha384 === 'string');
}

function addError(result: ValidationResult, issue: ValidationIssue): void {
  result.errors.push(issue);
  result.valid = false;
}

export async function checkArchive(src: ByteSource, opts: CheckOptions = {}): Promise<ArchiveCheck> {
  const opened = await openCosi(src, { headBytes: opts.headBytes, window: opts.window, maxMetadataBytes: opts.maxMetadataBytes });
  opts.opened?.(opened);
  const archive = await completeIndex(opened, { window: opts.window });
  let gpt: Gpt | undefined;
  let primary: Buffer | undefined;
  let gptFailure: CosiError | undefined;
  const region = primaryGptRegion(archive.metadata);
  // Only a well-formed ImageFile is decoded: validation names what is wrong with the others.
  const entry = region && usable(region.image) ? entryFor(archive, region.image.path) : undefined;
  if (region && entry) {
    try {
      primary = await readSmallImage(src, entry, region.image, windowLogOf(archive.metadata));
      gpt = parseGpt(primary);
    } catch (err) {
      if (!isCosiError(err)) throw err;
      gptFailure = err;
      primary = undefined;
    }
  }
  const result = validateCosi({ metadata: archive.metadata, entries: archive.index.entries, gpt }, { reader: opts.reader });
  if (gptFailure) addError(result, { field: region!.image.path, rule: 'primary-gpt-readable', message: `primary GPT image: ${oneLine(gptFailure)}` });
  if (archive.marker.ustarOffset !== 0) {
    addError(result, { field: 'tar[0]', rule: 'marker-bytes', message: 'tar[0]: the first 11 bytes of the file must be "cosi-marker" (an extension header comes first)' });
  }
  if (!archive.index.endMarkerComplete) {
    addError(result, { field: 'tar', rule: 'end-of-archive', message: 'tar: the end-of-archive marker must be two 512-byte zero blocks' });
  }
  return { archive, gpt, primary, gptFailure, result };
}

/** Paths of the images that carry no SHA-384 (allowed only in COSI 1.0), in metadata order. */
export function unhashedImages(images: ImageFile[]): string[] {
  return images.filter((i) => i.sha384 === undefined).map((i) => i.path);
}

/** Refuse images no hash vouches for unless `allow` (cosi-fetch --allow-unverified); the one line says which and what to do. */
export function refuseUnhashed(name: string, version: string, images: ImageFile[], allow: boolean): void {
  const paths = unhashedImages(images);
  if (allow || paths.length === 0) return;
  const one = paths.length === 1;
  throw new CosiError(
    'COSI_ERR_UNVERIFIED',
    `${name}: ${paths.join(', ')} ${one ? 'has' : 'have'} no SHA-384 (COSI ${version} does not require one), so ${one ? 'its' : 'their'} bytes cannot be verified: refusing to use ${one ? 'it' : 'them'}; pass --allow-unverified to accept unverified bytes`,
    { details: { unverified: paths } },
  );
}

/**
 * A reader's verdict: refuse an archive with any error, before a byte of it
 * is written. A missing SHA-384 where the version requires one, and a primary
 * GPT image whose bytes do not match theirs, are integrity failures (exit 4);
 * every other error is a format failure (exit 5). Returns the warnings, for
 * the caller to show.
 */
export function refuseInvalid(name: string, result: ValidationResult, gptFailure?: CosiError): ValidationIssue[] {
  if (result.errors.length === 0) return result.warnings;
  // Bytes that do not match their hash, or stop short, were damaged: the same class as for any other image.
  if (gptFailure && gptFailure.errorClass === 'integrity') throw gptFailure;
  const more = (n: number) => (n > 1 ? ` (and ${n - 1} more problem${n > 2 ? 's' : ''}; cosi-pack validate lists them all)` : '');
  const unhashed = result.errors.filter((i) => i.rule === 'required' && i.field.endsWith('.sha384'));
  if (unhashed.length > 0) {
    const fields = unhashed.slice(0, 3).map((i) => i.field).join(', ') + (unhashed.length > 3 ? ` and ${unhashed.length - 3} more` : '');
    throw new CosiError('COSI_ERR_UNVERIFIED', `${name}: ${fields}: COSI ${result.version} requires a SHA-384 for every image; without one the bytes cannot be verified: refusing this archive`, {
      details: { errors: result.errors },
    });
  }
  const first = result.errors[0]!;
  throw new CosiError('COSI_ERR_INVALID', `${name}: not a valid COSI archive: ${first.message}${more(result.errors.length)}`, { details: { errors: result.errors } });
}
