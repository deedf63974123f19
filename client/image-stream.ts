/**
 * One image, fetched and checked: range stream -> SHA-384 over the compressed
 * bytes -> zstd decode. The hash is compared in the tap's flush, which runs
 * before the decoder can end, so a consumer never sees 'end' on bytes that do
 * not match the metadata; it sees an error instead.
 *
 * When the header was not checked in advance, the request starts at the
 * header, which is checked before any data flows on; a mismatch costs one
 * more request after a header walk, never wrong data.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream';
import { CosiError, isCosiError } from '../shared/errors.js';
import type { ImageFile } from '../shared/format/metadata.js';
import type { ByteSource } from '../shared/transport/source.js';
import { BLOCK } from '../shared/format/tar.js';
import { createZstdDecoder } from '../shared/zstd/index.js';
import { headerMatches, type Located } from './locate.js';

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

function checkDigest(image: ImageFile, got: string): CosiError | null {
  if (image.sha384 === undefined || got === image.sha384.toLowerCase()) return null;
  return new CosiError('COSI_ERR_HASH_MISMATCH', `${image.path}: SHA-384 mismatch (expected ${image.sha384}, got ${got}): the image is corrupt`, {
    details: { path: image.path, expected: image.sha384, actual: got },
  });
}

/** The first `n` bytes of a stream; the rest stays readable. Resolves short only at end of stream. */
export function readPrefix(stream: Readable, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const cleanup = (): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (got < n && (chunk = stream.read() as Buffer | null) !== null) {
        const need = n - got;
        if (chunk.length > need) {
          stream.unshift(chunk.subarray(need));
          chunk = chunk.subarray(0, need);
        }
        parts.push(chunk);
        got += chunk.length;
      }
      if (got >= n) {
        cleanup();
        resolve(Buffer.concat(parts));
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(parts));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

export interface ImageStreamOptions {
  maxWindowLog: number;
  /** Compressed bytes as they arrive (progress). */
  onCompressed?: (n: number) => void;
  /** Called when an in-band header check fails; returns the checked location. */
  relocate?: () => Promise<Located>;
}

/** The compressed bytes of one image, plus what is needed to explain a failure. */
export interface CompressedStream {
  /** The bytes as they come from the source; pipe them through `tap`. */
  raw: Readable;
  /** Passes exactly the image's stored bytes and errors instead of ending when they do not match its SHA-384. */
  tap: HashTap;
  /** Where the data was taken from (after any relocation). */
  location: Located;
}

/** A verified decompressed stream plus what is needed to explain its failure. */
export interface ImageStream {
  readable: Readable;
  tap: HashTap;
  location: Located;
}

export async function openCompressed(src: ByteSource, image: ImageFile, where: Located, opts: ImageStreamOptions): Promise<CompressedStream> {
  let loc = where;
  let raw: Readable;
  if (!loc.checked) {
    raw = src.stream(loc.headerOffset, loc.dataOffset - loc.headerOffset + loc.size);
    const header = await readPrefix(raw, BLOCK);
    if (header.length < BLOCK) {
      raw.destroy();
      throw new CosiError('COSI_ERR_TRUNCATED', `${image.path}: archive ends inside its tar header at ${loc.headerOffset}`);
    }
    if (!headerMatches(header, image.path, loc.size, loc.headerOffset)) {
      raw.destroy();
      if (!opts.relocate) throw new CosiError('COSI_ERR_INVALID', `${image.path}: no tar header for it at ${loc.headerOffset}`);
      loc = await opts.relocate();
      raw = src.stream(loc.dataOffset, loc.size);
    }
  } else {
    raw = src.stream(loc.dataOffset, loc.size);
  }
  return { raw, tap: new HashTap(image, loc.size, opts.onCompressed), location: loc };
}

export async function openImageStream(src: ByteSource, image: ImageFile, where: Located, opts: ImageStreamOptions): Promise<ImageStream> {
  const c = await openCompressed(src, image, where, opts);
  const decoder = createZstdDecoder({ maxWindowLog: opts.maxWindowLog, expectedSize: image.uncompressedSize });
  // The callback form: the returned decoder carries the error to whoever consumes it.
  const readable = pipeline(c.raw, c.tap, decoder, () => undefined) as Readable;
  return { readable, tap: c.tap, location: c.location };
}

/**
 * A decode failure on bytes that carry a hash is most likely corruption in
 * transit or storage. Finish the hash over the remaining compressed bytes (one
 * more request) to say which: integrity (wrong bytes) or format (the writer
 * stored a bad stream with a matching hash).
 */
export async function explainFailure(src: ByteSource, image: ImageFile, s: Pick<CompressedStream, 'tap' | 'location'>, err: unknown): Promise<unknown> {
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
