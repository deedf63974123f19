/**
 * `cosi-pack validate --deep`: beyond the structure, every image's stored
 * bytes are hashed (SHA-384) and decoded (zstd, window limited by the
 * metadata), and the decoded size is held against uncompressedSize. One
 * image at a time, streamed, so memory stays bounded by one zstd window.
 */
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isCosiError, oneLine, type ErrorCode } from '../errors.js';
import { entryFor, windowLogOf, type ArchiveCheck } from './check.js';
import { explainFailure, HashTap } from './image-hash.js';
import { allImageFiles, type ImageFile } from './metadata.js';
import type { ByteSource } from '../transport/source.js';
import type { ValidationIssue } from './validate.js';
import { isSize } from './validate-checker.js';
import { createZstdDecoder, readSeekTable, SEEK_TABLE_RULE } from '../zstd/index.js';
import { SeekTableCheck } from '../zstd/seek-check.js';

export interface DeepReport {
  /** Images decoded (each hashed too, when it has a SHA-384). */
  decoded: string[];
  /** Of those, the ones without a SHA-384 (COSI 1.0): decoded and sized, not verified. */
  unhashed: string[];
  errors: ValidationIssue[];
  /** Images that end with a seek table, and how many entries it lists (the COSI id's skippable frame is one). */
  framed: Array<{ path: string; entries: number }>;
}

const RULES: Partial<Record<ErrorCode, string>> = {
  COSI_ERR_HASH_MISMATCH: 'image-sha384',
  COSI_ERR_ZSTD: 'image-zstd',
  COSI_ERR_SIZE_MISMATCH: 'image-size',
  COSI_ERR_TRUNCATED: 'image-truncated',
  COSI_ERR_UNSUPPORTED: 'image-zstd',
};

/** Hash and decode every image the metadata names and the tar holds; structural problems are left to checkArchive's report. */
export async function checkImages(check: ArchiveCheck, onImage?: (path: string) => void): Promise<DeepReport> {
  const { archive } = check;
  const src = archive.source;
  const report: DeepReport = { decoded: [], unhashed: [], errors: [], framed: [] };
  const maxWindowLog = windowLogOf(archive.metadata);
  for (const image of allImageFiles(archive.metadata)) {
    const entry = typeof image.path === 'string' ? entryFor(archive, image.path) : undefined;
    if (!entry || !isSize(image.uncompressedSize) || entry.size !== image.compressedSize) continue;
    onImage?.(image.path);
    try {
      const framed = await decodeImage(src, entry, image, maxWindowLog);
      if (framed) report.framed.push({ path: image.path, entries: framed.entries });
    } catch (why) {
      if (!isCosiError(why)) throw why;
      report.errors.push({ field: image.path, rule: why.details?.['rule'] === SEEK_TABLE_RULE ? 'image-seek-table' : RULES[why.code] ?? 'image-unreadable', message: `${image.path} ${oneLine(why).replace(`${image.path}: `, '')}` });
    }
    report.decoded.push(image.path);
    if (image.sha384 === undefined) report.unhashed.push(image.path);
  }
  return report;
}

/**
 * Hashes and decodes one image, its decoded bytes in order to `out` when
 * given. A framed image is decoded frame by frame where its seek table says,
 * which holds the table against its frames. Throws the explained failure
 * (explainFailure: integrity when the bytes do not match their hash).
 */
export async function decodeImage(
  src: ByteSource,
  entry: { dataOffset: number; size: number },
  image: ImageFile & { uncompressedSize: number },
  maxWindowLog: number,
  out?: (chunk: Buffer) => Promise<void>,
): Promise<{ entries: number } | undefined> {
  const tap = new HashTap(image, entry.size);
  const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (out ? out(chunk).then(() => cb(), cb) : cb()) });
  try {
    const seek = await readSeekTable(src, entry, { path: image.path, compressedSize: entry.size, uncompressedSize: image.uncompressedSize });
    const check = seek
      ? [new SeekTableCheck(seek.frames, image.path, maxWindowLog, out)]
      : [createZstdDecoder({ maxWindowLog, expectedSize: image.uncompressedSize }), sink];
    await pipeline([src.stream(entry.dataOffset, entry.size), tap, ...check]);
    return seek && { entries: seek.frames.length };
  } catch (err) {
    throw await explainFailure(src, image, { tap, location: entry }, err);
  }
}
