/**
 * One image, fetched and checked: range stream -> SHA-384 over the compressed
 * bytes -> zstd decode. The hash is compared in the tap's flush, which runs
 * before the decoder can end, so a consumer never sees 'end' on bytes that do
 * not match the metadata; it sees an error instead.
 *
 * Where the bytes are comes from the archive's tar index, walked and checked
 * when the image was opened, so a request starts at the image's data.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { HashTap } from '../shared/format/image-hash.js';
import type { ImageFile } from '../shared/format/metadata.js';
import type { ByteSource } from '../shared/transport/source.js';
import { createZstdDecoder } from '../shared/zstd/index.js';
import type { Located } from './locate.js';

export { explainFailure, HashTap } from '../shared/format/image-hash.js';

export interface ImageStreamOptions {
  maxWindowLog: number;
  /** Compressed bytes as they arrive (progress). */
  onCompressed?: (n: number) => void;
}

/** The compressed bytes of one image, plus what is needed to explain a failure. */
export interface CompressedStream {
  /** The bytes as they come from the source; pipe them through `tap`. */
  raw: Readable;
  /** Passes exactly the image's stored bytes and errors instead of ending when they do not match its SHA-384. */
  tap: HashTap;
  /** Where the data was taken from. */
  location: Located;
}

/** A verified decompressed stream plus what is needed to explain its failure. */
export interface ImageStream {
  readable: Readable;
  tap: HashTap;
  location: Located;
}

export function openCompressed(src: ByteSource, image: ImageFile, at: Located, opts: ImageStreamOptions): CompressedStream {
  return { raw: src.stream(at.dataOffset, at.size), tap: new HashTap(image, at.size, opts.onCompressed), location: at };
}

export function openImageStream(src: ByteSource, image: ImageFile, where: Located, opts: ImageStreamOptions): ImageStream {
  const c = openCompressed(src, image, where, opts);
  const decoder = createZstdDecoder({ maxWindowLog: opts.maxWindowLog, expectedSize: image.uncompressedSize });
  // The callback form: the returned decoder carries the error to whoever consumes it.
  const readable = pipeline(c.raw, c.tap, decoder, () => undefined) as Readable;
  return { readable, tap: c.tap, location: c.location };
}
