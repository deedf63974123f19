/**
 * Whole-archive checks shared by `cosi-pack validate`, the server's indexer
 * and `cosi-fetch verify`: walk the headers, read metadata, decode the small
 * primary-GPT image, and hold everything against the spec.
 */
import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { openCosi, type CosiArchive } from './archive.js';
import { CosiError, isCosiError, oneLine } from '../errors.js';
import { parseGpt, type Gpt } from '../disk/gpt.js';
import { primaryGptRegion, type CosiMetadata, type ImageFile } from './metadata.js';
import type { ByteSource } from '../transport/source.js';
import type { TarEntry } from './tar.js';
import { validateCosi, type ValidationResult } from './validate.js';
import { createZstdDecoder } from '../zstd/index.js';

export interface ArchiveCheck {
  archive: CosiArchive;
  gpt?: Gpt;
  result: ValidationResult;
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

export async function checkArchive(src: ByteSource): Promise<ArchiveCheck> {
  const archive = await openCosi(src, { full: true });
  let gpt: Gpt | undefined;
  let gptError: string | undefined;
  const region = primaryGptRegion(archive.metadata);
  const entry = region && typeof region.image?.path === 'string' ? entryFor(archive, region.image.path) : undefined;
  if (region && entry) {
    try {
      gpt = parseGpt(await readSmallImage(src, entry, region.image, windowLogOf(archive.metadata)));
    } catch (err) {
      if (!isCosiError(err)) throw err;
      gptError = oneLine(err);
    }
  }
  const result = validateCosi({ metadata: archive.metadata, entries: archive.index.entries, gpt });
  if (gptError) {
    result.errors.push({ field: region!.image.path, rule: 'primary-gpt-readable', message: `primary GPT image: ${gptError}` });
    result.valid = false;
  }
  if (archive.marker.ustarOffset !== 0) {
    result.errors.push({ field: 'tar[0]', rule: 'marker-bytes', message: 'tar[0]: the first 11 bytes of the file must be "cosi-marker" (an extension header comes first)' });
    result.valid = false;
  }
  if (!archive.index.endMarkerComplete) {
    result.errors.push({ field: 'tar', rule: 'end-of-archive', message: 'tar: the end-of-archive marker must be two 512-byte zero blocks' });
    result.valid = false;
  }
  return { archive, gpt, result };
}
