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
import { FIRST_FRAME_BYTES, firstFrameIsPart, readSeekTable, type SeekFrame } from '../shared/zstd/index.js';
import type { CachedSource } from '../shared/transport/cached-source.js';
import type { IHasher } from 'hash-wasm';
import { explainFailure, openCompressed, type ImageStreamOptions } from './image-stream.js';
import { ResumeTap } from './resume-tap.js';
import type { Located } from './locate.js';

export interface FramedPumpOptions {
  threads: number;
  target: WriteTarget;
  onWritten: (r: WriteReport) => void;
  resume?: ResumeRun;
}

/** A fetch that can continue later (cosi-fetch --resume). */
export interface ResumeRun {
  /** Entries of the seek table already written (and hashed into `hasher`'s state). */
  start: number;
  hasher: IHasher;
  /** The first `done` entries are written; `state` is the hash over their compressed bytes. */
  onCheckpoint: (done: number, state: Uint8Array) => void;
}

const frameEnd = (f: SeekFrame): number => f.compressedOffset + f.compressedSize;

/** The image's seek table when it has one worth decoding in parallel (two zstd frames or more) and lanes can run here. */
export async function framesOf(src: CachedSource, image: ImageFile, at: Located): Promise<SeekFrame[] | undefined> {
  if (!canDecodeInLanes() || !firstFrameIsPart(src.peek(at.dataOffset, Math.min(at.size, FIRST_FRAME_BYTES)), image.uncompressedSize)) return undefined;
  const seek = await readSeekTable(src, at, image);
  if (!seek || seek.frames.filter((f) => f.decompressedSize > 0).length < 2) return undefined;
  return seek.frames;
}

/** Fetches, verifies and decodes a framed image into its target; errors explained as for any image (integrity when the bytes are not theirs). */
export async function pumpFramed(src: ByteSource, image: ImageFile, at: Located, frames: SeekFrame[], o: ImageStreamOptions, p: FramedPumpOptions): Promise<void> {
  const r = p.resume;
  const start = r?.start ?? 0;
  let prefix = start;
  const done = new Set<number>();
  // Frames finish out of order across lanes; the journal only ever records a prefix written whole.
  const onFrameDone = r
    ? (index: number) => {
        done.add(index);
        const before = prefix;
        while (done.has(prefix)) done.delete(prefix++);
        const state = prefix > before && resumeTap ? resumeTap.takeState(frameEnd(frames[prefix - 1]!)) : undefined;
        if (state) r.onCheckpoint(prefix, state);
      }
    : undefined;
  const sink = new FramedSink({ frames: frames.slice(start), label: image.path, maxWindowLog: o.maxWindowLog, threads: p.threads, target: p.target, onWritten: p.onWritten, onFrameDone });
  const from = start === 0 ? 0 : frameEnd(frames[start - 1]!);
  const resumeTap = r && new ResumeTap(image, at.size, from, r.hasher, frames.map(frameEnd), o.onCompressed);
  const c = resumeTap ? { raw: src.stream(at.dataOffset + from, at.size - from), tap: resumeTap, location: at } : openCompressed(src, image, at, o);
  try {
    await pipeline(c.raw, c.tap, sink);
  } catch (err) {
    // No lane may still write the target once the caller closes it.
    if (!sink.closed) await new Promise((resolve) => sink.once('close', resolve));
    throw await explainFailure(src, image, c, err);
  }
}
