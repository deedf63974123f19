/**
 * A framed image (one that ends with a seek table) fetched into a file or
 * device: the compressed bytes still come in order through the SHA-384 tap,
 * and its frames are decoded in parallel lanes, each written at its offset
 * (shared/zstd/lanes.ts). The table is read first, with one small read of
 * the entry's end; an image without one goes the single-stream way.
 */
import { pipeline } from 'node:stream/promises';
import type { ImageFile } from '../shared/format/metadata.js';
import type { WriteReport, WriteTarget } from '../shared/transport/positional-write.js';
import type { ByteSource } from '../shared/transport/source.js';
import { canDecodeInLanes, FramedSink } from '../shared/zstd/lanes.js';
import { readSeekTable, type SeekFrame } from '../shared/zstd/index.js';
import { explainFailure, openCompressed, type ImageStreamOptions } from './image-stream.js';
import type { Located } from './locate.js';

export interface FramedPumpOptions {
  threads: number;
  target: WriteTarget;
  onWritten: (r: WriteReport) => void;
}

/** The image's seek table when it has one worth decoding in parallel (two zstd frames or more) and lanes can run here. */
export async function framesOf(src: ByteSource, image: ImageFile, at: Located): Promise<SeekFrame[] | undefined> {
  if (!canDecodeInLanes()) return undefined;
  const seek = await readSeekTable(src, at, image);
  if (!seek || seek.frames.filter((f) => f.decompressedSize > 0).length < 2) return undefined;
  return seek.frames;
}

/** Fetches, verifies and decodes a framed image into its target; errors explained as for any image (integrity when the bytes are not theirs). */
export async function pumpFramed(src: ByteSource, image: ImageFile, at: Located, frames: SeekFrame[], o: ImageStreamOptions, p: FramedPumpOptions): Promise<void> {
  const sink = new FramedSink({ frames, label: image.path, maxWindowLog: o.maxWindowLog, threads: p.threads, target: p.target, onWritten: p.onWritten });
  const c = openCompressed(src, image, at, o);
  try {
    await pipeline(c.raw, c.tap, sink);
  } catch (err) {
    // No lane may still write the target once the caller closes it.
    if (!sink.closed) await new Promise((resolve) => sink.once('close', resolve));
    throw await explainFailure(src, image, c, err);
  }
}
