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
import { allImageFiles } from './metadata.js';
import type { ValidationIssue } from './validate.js';
import { isSize } from './validate-checker.js';
import { createZstdDecoder } from '../zstd/index.js';

export interface DeepReport {
  /** Images decoded (each hashed too, when it has a SHA-384). */
  decoded: string[];
  /** Of those, the ones without a SHA-384 (COSI 1.0): decoded and sized, not verified. */
  unhashed: string[];
  errors: ValidationIssue[];
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
  const report: DeepReport = { decoded: [], unhashed: [], errors: [] };
  const maxWindowLog = windowLogOf(archive.metadata);
  for (const image of allImageFiles(archive.metadata)) {
    const entry = typeof image.path === 'string' ? entryFor(archive, image.path) : undefined;
    if (!entry || !isSize(image.uncompressedSize) || entry.size !== image.compressedSize) continue;
    onImage?.(image.path);
    const tap = new HashTap(image, entry.size);
    const decoder = createZstdDecoder({ maxWindowLog, expectedSize: image.uncompressedSize });
    const sink = new Writable({ write: (_chunk, _enc, cb) => cb() });
    try {
      await pipeline(src.stream(entry.dataOffset, entry.size), tap, decoder, sink);
    } catch (err) {
      const why = await explainFailure(src, image, { tap, location: entry }, err);
      if (!isCosiError(why)) throw why;
      report.errors.push({ field: image.path, rule: RULES[why.code] ?? 'image-unreadable', message: `${image.path} ${oneLine(why).replace(`${image.path}: `, '')}` });
    }
    report.decoded.push(image.path);
    if (image.sha384 === undefined) report.unhashed.push(image.path);
  }
  return report;
}
