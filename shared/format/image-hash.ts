/**
 * The SHA-384 of an image's stored bytes, checked as they flow: HashTap
 * passes exactly the image's compressed size and compares the digest in its
 * flush, which runs before whatever it feeds (a zstd decoder) can end, so a
 * consumer sees an error instead of 'end' on bytes that do not match. Used by
 * cosi-fetch's streams and by `cosi-pack validate --deep`.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { CosiError, isCosiError } from '../errors.js';
import type { ImageFile } from './metadata.js';
import type { ByteSource } from '../transport/source.js';

/** Counts and hashes compressed bytes, passes exactly `size` of them, checks the hash at the end. */
export class HashTap extends Transform {
  readonly hash: Hash = createHash('sha384');
  bytes = 0;

  constructor(
    private readonly image: ImageFile,
    private readonly size: number,
    private readonly onBytes?: (n: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const room = this.size - this.bytes;
    // A server may send more than asked (a 200 whose excess we never trust); keep only ours.
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (part.length > 0) {
      this.hash.update(part);
      this.bytes += part.length;
      this.onBytes?.(part.length);
      this.push(part);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes < this.size) {
      cb(new CosiError('COSI_ERR_TRUNCATED', `${this.image.path}: archive ends after ${this.bytes} of ${this.size} compressed bytes`));
      return;
    }
    cb(checkDigest(this.image, this.hash.copy().digest('hex')));
  }
}

/** The mismatch error when `got` is not the image's SHA-384; null when it is, or when the image has none. */
export function checkDigest(image: ImageFile, got: string): CosiError | null {
  if (image.sha384 === undefined || got === image.sha384.toLowerCase()) return null;
  return new CosiError('COSI_ERR_HASH_MISMATCH', `${image.path}: SHA-384 mismatch (expected ${image.sha384}, got ${got}): the image is corrupt`, {
    details: { path: image.path, expected: image.sha384, actual: got },
  });
}

/**
 * A decode failure on bytes that carry a hash is most likely corruption in
 * transit or storage. Finish the hash over the remaining compressed bytes (one
 * more request) to say which: integrity (wrong bytes) or format (the writer
 * stored a bad stream with a matching hash).
 */
/** What explainFailure needs of a tap: how far it hashed, and a hash it may finish (HashTap, or a resumable one). */
export interface HashingTap {
  bytes: number;
  hash: { copy(): { update(b: Uint8Array): unknown; digest(enc: 'hex'): string } };
}

export async function explainFailure(src: ByteSource, image: ImageFile, s: { tap: HashingTap; location: { dataOffset: number; size: number } }, err: unknown): Promise<unknown> {
  if (!isCosiError(err) || (err.code !== 'COSI_ERR_ZSTD' && err.code !== 'COSI_ERR_SIZE_MISMATCH')) return err;
  if (image.sha384 === undefined) return err;
  const { tap, location } = s;
  const hash = tap.hash.copy();
  let got = tap.bytes;
  try {
    if (got < location.size) {
      for await (const chunk of src.stream(location.dataOffset + got, location.size - got)) {
        const b = chunk as Buffer;
        const part = b.subarray(0, Math.min(b.length, location.size - got));
        hash.update(part);
        got += part.length;
        if (got >= location.size) break;
      }
    }
  } catch {
    return err;
  }
  if (got < location.size) return new CosiError('COSI_ERR_TRUNCATED', `${image.path}: archive ends after ${got} of ${location.size} compressed bytes`);
  const mismatch = checkDigest(image, hash.digest('hex'));
  if (mismatch) {
    return new CosiError('COSI_ERR_HASH_MISMATCH', `${mismatch.message} (zstd: ${err.message})`, { cause: err, details: mismatch.details });
  }
  return err;
}
