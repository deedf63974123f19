/**
 * A remote (or local) COSI image opened for fetching: metadata, partitions,
 * and verified decompressed streams, plus the writers built on them.
 *
 * Opening reads the head (one request; two when metadata.json is larger),
 * then walks the rest of the tar headers (one small read per image whose
 * header the head did not cover), decodes the primary GPT, and refuses the
 * archive, before anything is written, when it breaks any rule that
 * `cosi-pack validate` checks from metadata, tar index and GPT. Each image is
 * then one ranged request for its data.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DEFAULT_HEAD_BYTES, sniff, startsLikeCosi } from '../shared/format/archive.js';
import { checkArchive, refuseInvalid, refuseUnhashed, windowLogOf, type ArchiveCheck } from '../shared/format/check.js';
import { CosiError, isCosiError } from '../shared/errors.js';
import type { Gpt } from '../shared/disk/gpt.js';
import { openSource } from '../shared/transport/open.js';
import type { HttpSource } from '../shared/transport/http/source.js';
import type { HttpSourceOptions } from '../shared/transport/http/options.js';
import { allImageFiles, listPartitions, type CosiMetadata, type ImageFile, type PartitionInfo } from '../shared/format/metadata.js';
import { selectPartition } from '../shared/format/select.js';
import type { ValidationIssue } from '../shared/format/validate.js';
import type { ByteSource } from '../shared/transport/source.js';
import { readTarIndex } from '../shared/format/tar.js';
import { canDecodeInWorker, createZstdSink, decodeFrameRange, FIRST_FRAME_BYTES, firstFrameSize, readSeekTable, zstdBackend, type SeekFrame } from '../shared/zstd/index.js';
import { CachedSource } from '../shared/transport/cached-source.js';
import { framesOf, pumpFramed, type ResumeRun } from './framed-pump.js';
import { canDecodeIntoFile, ProcessFileSink } from '../shared/zstd/process-file.js';
import { asWritable, CHUNK_SINK, isChunkSink, type ChunkSink } from './chunk-sink.js';
import { explainFailure, openCompressed, openImageStream, type ImageStream, type ImageStreamOptions } from './image-stream.js';
import { Locator, WALK_WINDOW, type Located } from './locate.js';
import type { Progress } from './progress.js';

export interface OpenOptions extends HttpSourceOptions {
  /** Pin metadata.json: refuse the image unless its SHA-384 (hex) matches. */
  metadataSha384?: string;
  /** Use this source instead of opening `urlOrPath` (tests, custom transports). */
  source?: ByteSource;
  /** First read; default 64 KiB. */
  headBytes?: number;
  /** Refuse a metadata.json larger than this before reading it (default 4 MiB). */
  maxMetadataBytes?: number;
  /**
   * Stream and write images that carry no SHA-384 (COSI 1.0 allows that);
   * without it such an image is refused (COSI_ERR_UNVERIFIED) before a byte of it is read.
   */
  allowUnverified?: boolean;
  /**
   * Decode lanes for framed images (those ending with a seek table): frames
   * decoded at once. Default: the cores available; 0 decodes them as one stream.
   */
  decodeThreads?: number;
}

export interface TransferStats {
  /** Requests sent (HTTP, redirect hops and resumes included) or reads made (local files). */
  requests: number;
  /** Bytes received (HTTP) or read (local files). */
  bytes: number;
}

const SHA384_RE = /^[0-9a-f]{96}$/i;

export function checkPin(pin: string | undefined): string | undefined {
  if (pin === undefined) return undefined;
  if (!SHA384_RE.test(pin)) throw new CosiError('COSI_ERR_USAGE', `--metadata-sha384 must be 96 hex digits, got ${JSON.stringify(pin)}`);
  return pin.toLowerCase();
}

/** Refuse metadata whose SHA-384 is not the pinned one (no pin: anything goes). */
export function assertPinned(name: string, pin: string | undefined, got: string): void {
  if (pin !== undefined && got !== pin) throw pinMismatch(name, pin, got);
}

function pinMismatch(name: string, want: string, got: string): CosiError {
  return new CosiError('COSI_ERR_HASH_MISMATCH', `${name}: metadata.json SHA-384 is ${got}, but ${want} was pinned: refusing this image`, {
    details: { expected: want, actual: got },
  });
}

/** The pin is checked on the raw bytes, so it holds even when they do not parse. */
async function pinOnUnparsable(src: CachedSource, pin: string, err: unknown): Promise<never> {
  if (isCosiError(err, 'COSI_ERR_METADATA')) {
    const idx = await readTarIndex(src, { head: src.head(), stopAfter: (_e, i) => i === 1 }).catch(() => undefined);
    const m = idx?.entries[1];
    if (m && m.name === 'metadata.json') {
      const bytes = await src.read(m.dataOffset, m.size);
      const got = createHash('sha384').update(bytes).digest('hex');
      if (got !== pin) throw pinMismatch(src.name, pin, got);
    }
  }
  throw err;
}

/** How much of a shared budget (bytes of decoder memory) each item takes. */
export interface PoolBudget<T> {
  weight: (item: T) => number;
  /** Items start only while the running ones' weights fit; one item alone always runs. */
  budget: number;
}

/**
 * Runs `fn` over `items` with at most `jobs` at once and, given a budget, only
 * as many as fit in it; a light item may start while a heavy one waits for
 * room. The first failure stops new starts and is thrown.
 */
export async function pool<T, R>(items: T[], jobs: number, fn: (item: T, i: number) => Promise<R>, limit?: PoolBudget<T>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  const started = new Array<boolean>(items.length).fill(false);
  const weight = items.map((it) => limit?.weight(it) ?? 0);
  const budget = limit?.budget ?? Infinity;
  let used = 0;
  let running = 0;
  let left = items.length;
  let failed: unknown;
  // Workers with nothing that fits wait here until some item ends.
  let wakers: Array<() => void> = [];
  const worker = async (): Promise<void> => {
    while (failed === undefined && left > 0) {
      const i = started.findIndex((s, k) => !s && (running === 0 || used + weight[k]! <= budget));
      if (i < 0) {
        await new Promise<void>((r) => wakers.push(r));
        continue;
      }
      started[i] = true;
      left--;
      running++;
      used += weight[i]!;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      } finally {
        running--;
        used -= weight[i]!;
        const ws = wakers;
        wakers = [];
        for (const w of ws) w();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

/**
 * A decode holds the frame's window: at most 2^maxWindowLog, and never more
 * than the image itself (zstd sizes the window down to the content).
 */
export function decodeWindow(image: ImageFile, maxWindowLog: number): number {
  return Math.min(2 ** maxWindowLog, image.uncompressedSize);
}

/** Where an image's compressed bytes go and what to report while they flow. */
export interface PumpOptions {
  progress?: Progress;
  label?: string;
  /** Overrides OpenOptions.allowUnverified for this image (verify checks what it can, then reports). */
  allowUnverified?: boolean;
  /** Continue a framed image from a written prefix, saving hash states as frames complete (cosi-fetch --resume). */
  resume?: ResumeRun;
}

/** How pump() decoded an image: `frames` and `lanes` when its seek table let frames decode in parallel. */
export interface PumpReport {
  frames?: number;
  lanes?: number;
}

/** One image as verify() checked it; `verified` is false when it has no SHA-384 (only size and zstd checked). */
export interface VerifiedImage {
  path: string;
  compressedSize: number;
  uncompressedSize: number;
  sha384?: string;
  verified: boolean;
}

export class CosiImage {
  readonly name: string;
  readonly metadata: CosiMetadata;
  readonly metadataSha384: string;
  readonly partitions: PartitionInfo[];
  readonly gpt: Gpt | undefined;
  /** The decoded primary-GPT image (protective MBR, header, entries), when the metadata has one. */
  readonly primaryImage: Buffer | undefined;
  readonly maxWindowLog: number;
  /** What the archive breaks that does not refuse it (rules for writers, unreferenced members); one line each. */
  readonly warnings: ValidationIssue[];
  readonly archive: ArchiveCheck['archive'];
  private readonly locator: Locator;

  private constructor(
    check: ArchiveCheck,
    readonly source: CachedSource,
    private readonly allowUnverified: boolean,
    private readonly decodeThreads: number,
  ) {
    const { archive, gpt, primary } = check;
    this.archive = archive;
    this.name = source.name;
    this.metadata = archive.metadata;
    this.metadataSha384 = archive.metadataSha384;
    this.gpt = gpt;
    this.primaryImage = primary;
    this.partitions = listPartitions(archive.metadata, gpt);
    this.maxWindowLog = windowLogOf(archive.metadata);
    this.locator = new Locator(archive.index.entries, source.name);
    this.warnings = refuseInvalid(source.name, check.result, check.gptFailure);
  }

  static async open(urlOrPath: string, opts: OpenOptions = {}): Promise<CosiImage> {
    const pin = checkPin(opts.metadataSha384);
    const inner = opts.source ?? openSource(urlOrPath, opts);
    // A miss brings a header and the small member after it; never a large window per image.
    const src = new CachedSource(inner, { readAhead: WALK_WINDOW });
    try {
      const headBytes = opts.headBytes ?? DEFAULT_HEAD_BYTES;
      const head = await src.prime(headBytes);
      if (!startsLikeCosi(head)) {
        throw new CosiError('COSI_ERR_NOT_COSI', `${src.name} is not a COSI file (${sniff(head)})`);
      }
      let check: ArchiveCheck;
      try {
        check = await checkArchive(src, {
          headBytes,
          window: 512,
          maxMetadataBytes: opts.maxMetadataBytes,
          reader: true,
          // The pin first: another image's index is not worth walking.
          opened: (a) => assertPinned(src.name, pin, a.metadataSha384),
        });
      } catch (err) {
        if (pin) await pinOnUnparsable(src, pin, err);
        throw err;
      }
      return new CosiImage(check, src, opts.allowUnverified ?? false, opts.decodeThreads ?? availableParallelism());
    } catch (err) {
      await src.close().catch(() => undefined);
      throw err;
    }
  }

  /** Images in `images` that carry no SHA-384, unless they are allowed: refused before anything is opened or read. */
  refuseUnverified(images: ImageFile[], allow = this.allowUnverified): void {
    refuseUnhashed(this.name, this.metadata.version, images, allow);
  }

  /** One partition by selector: 'root', 'esp', '/var', '3', an image path. */
  select(selector: string): PartitionInfo {
    return selectPartition(this.partitions, selector);
  }

  /** The seek table's frames of an image that can decode in parallel lanes here; undefined otherwise (one read of the entry's end). */
  async seekFrames(image: ImageFile): Promise<SeekFrame[] | undefined> {
    const [at] = this.where(image, {});
    return this.decodeThreads > 0 ? framesOf(this.source, image, at) : undefined;
  }

  /**
   * Bytes [offset, offset+length) of a framed image's decompressed content,
   * decoding only the frames that cover them (each checked by its zstd
   * checksum; the image's SHA-384 covers the whole entry, so it cannot vouch
   * for a part). An image without a seek table is COSI_ERR_UNSUPPORTED.
   */
  async readUncompressed(image: ImageFile, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > image.uncompressedSize) {
      throw new CosiError('COSI_ERR_USAGE', `${image.path}: bytes ${offset}+${length} are outside its ${image.uncompressedSize} decompressed bytes`);
    }
    if (length === 0) return Buffer.alloc(0);
    const [at] = this.where(image, {});
    const seek = await readSeekTable(this.source, at, image);
    if (!seek) {
      throw new CosiError('COSI_ERR_UNSUPPORTED', `${image.path} has no seek table: only framed images (cosi-pack --frame-size, cosi-pack reframe) can be read at an offset; stream() reads it whole`);
    }
    const chunks: Buffer[] = [];
    for await (const c of decodeFrameRange((o, l) => this.source.stream(at.dataOffset + o, l), seek.frames, this.maxWindowLog, offset, offset + length - 1)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** What identifies the archive's version at its source: the ETag (else Last-Modified) an HTTP server pinned; undefined for local files. */
  sourceVersion(): string | undefined {
    const v = (this.source.inner as Partial<HttpSource>).validator;
    return v?.etag ?? v?.lastModified;
  }

  /** Requests and bytes so far: HTTP counters when remote, reads when local. */
  stats(): TransferStats {
    const inner = this.source.inner as Partial<HttpSource>;
    if (inner.stats && typeof inner.stats.requests === 'number') return { requests: inner.stats.requests, bytes: inner.stats.bytes };
    const s = this.source.stats;
    return { requests: s.reads + s.streams, bytes: s.bytes };
  }

  /** Where an image's bytes are, checked against the archive's size, and how to stream them. */
  private where(image: ImageFile, opts: PumpOptions): [Located, ImageStreamOptions] {
    this.refuseUnverified([image], opts.allowUnverified ?? this.allowUnverified);
    const at = this.locator.locate(image.path, image.compressedSize);
    const total = this.archive.size;
    if (at.dataOffset + at.size > total) {
      throw new CosiError('COSI_ERR_TRUNCATED', `${this.name} is truncated: ${image.path} needs bytes up to ${at.dataOffset + at.size}, the file has ${total}`);
    }
    const progress = opts.progress;
    return [
      at,
      {
        maxWindowLog: this.maxWindowLog,
        onCompressed: progress ? (n) => progress.compressed(image.path, n) : undefined,
      },
    ];
  }

  /**
   * The decompressed bytes of one image. The stream errors instead of ending
   * when the bytes do not match the metadata's SHA-384 or size.
   */
  async stream(image: ImageFile, opts: PumpOptions = {}): Promise<ImageStream> {
    const [at, o] = this.where(image, opts);
    return openImageStream(this.source, image, at, o);
  }

  /**
   * Stream one image into `sink`, turning a decode failure into the right
   * error class. A ChunkSink (one that is done with each chunk when put()
   * settles) gets the worker decoder and its recycled buffers, or, when it
   * offers a writeTarget, the worker writes its file directly.
   */
  async pump(image: ImageFile, sink: Writable | ChunkSink, opts: PumpOptions = {}): Promise<PumpReport> {
    // A file the decoder may write itself, and an image ending with a seek table: its frames decode in parallel.
    const direct = isChunkSink(sink) && sink.wrote && this.decodeThreads > 0 ? sink.writeTarget?.() : undefined;
    if (direct) {
      const [at, o] = this.where(image, opts);
      const frames = await framesOf(this.source, image, at);
      if (frames) {
        await pumpFramed(this.source, image, at, frames, o, { threads: this.decodeThreads, target: direct, onWritten: (r) => (sink as ChunkSink).wrote!(r), resume: opts.resume });
        return { frames: frames.filter((f) => f.decompressedSize > 0).length, lanes: this.decodeThreads };
      }
    }
    // Node 20 with the zstd program, into a file: the program writes the file itself.
    const file = isChunkSink(sink) && sink.wrote && zstdBackend(image.uncompressedSize) === 'zstd' ? sink.writeTarget?.() : undefined;
    if (file && canDecodeIntoFile(file)) {
      const [at, o] = this.where(image, opts);
      if (firstFrameSize(this.source.peek(at.dataOffset, Math.min(at.size, FIRST_FRAME_BYTES))) === image.uncompressedSize) {
        await this.decodeInto(image, at, o, new ProcessFileSink({ maxWindowLog: this.maxWindowLog, expectedSize: image.uncompressedSize, target: file, onWritten: (r) => (sink as ChunkSink).wrote!(r) }));
        return {};
      }
    }
    if (!isChunkSink(sink) || !canDecodeInWorker(zstdBackend())) {
      const s = await this.stream(image, opts);
      try {
        await pipeline(s.readable, asWritable(sink));
      } catch (err) {
        throw await explainFailure(this.source, image, s, err);
      }
      return {};
    }
    const [at, o] = this.where(image, opts);
    const target = sink.writeTarget?.();
    // Made before the request, so a sink that cannot be made leaves no response open.
    // The compressed chunks go from the source through the hash tap into the decoder and nowhere else.
    const base = { maxWindowLog: this.maxWindowLog, expectedSize: image.uncompressedSize, releaseInput: true };
    const decoder = target && sink.wrote
      ? createZstdSink({ ...base, target, onWritten: (r) => sink.wrote!(r) })
      : createZstdSink({ ...base, onData: (b) => sink.put(b) });
    await this.decodeInto(image, at, o, decoder);
    return {};
  }

  /** The image's compressed bytes, through the hash tap, into `decoder`; failures explained. */
  private async decodeInto(image: ImageFile, at: Located, o: ImageStreamOptions, decoder: Writable): Promise<void> {
    const c = openCompressed(this.source, image, at, o);
    try {
      await pipeline(c.raw, c.tap, decoder);
    } catch (err) {
      // A decoder writing the target (a worker, a child) must have stopped before the caller may close the file.
      if (!decoder.closed) await new Promise((resolve) => decoder.once('close', resolve));
      throw await explainFailure(this.source, image, c, err);
    }
  }

  /**
   * Every image decoded and its size checked, and its SHA-384 where it has
   * one; nothing written. An image without a SHA-384 (COSI 1.0) is checked
   * as far as it can be and reported with `verified: false`: the caller
   * decides what that means (cosi-fetch verify fails without --allow-unverified).
   */
  async verify(opts: { jobs?: number; /** --jobs as given (lifts the memory budget) */ jobsGiven?: number; progress?: Progress } = {}): Promise<VerifiedImage[]> {
    const images = allImageFiles(this.metadata);
    return pool(images, opts.jobs ?? 2, async (image) => {
      opts.progress?.begin({ path: image.path, label: image.path, total: image.uncompressedSize, compressedTotal: image.compressedSize });
      let ok = false;
      try {
        await this.pump(image, countingSink((n) => opts.progress?.written(image.path, n)), { ...opts, allowUnverified: true });
        ok = true;
      } finally {
        opts.progress?.end(image.path, ok);
      }
      return { path: image.path, compressedSize: image.compressedSize, uncompressedSize: image.uncompressedSize, sha384: image.sha384, verified: image.sha384 !== undefined };
    }, this.decodeBudget(opts.jobsGiven));
  }

  /**
   * Decoder memory for `pool`: by default the windows decoded at once stay
   * within one full window (2^maxWindowLog) plus 64 MiB, so two 128 MiB
   * windows do not add up while a small image still runs beside a large one.
   * An explicit --jobs N lifts that to N full windows.
   */
  decodeBudget(jobs?: number): PoolBudget<ImageFile | PartitionInfo> {
    const full = 2 ** this.maxWindowLog;
    return {
      weight: (x) => decodeWindow('image' in x ? x.image : x, this.maxWindowLog),
      budget: jobs !== undefined ? jobs * full : full + (64 << 20),
    };
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

/** A sink that only counts: a Writable for stream users, a ChunkSink for pump. */
export function countingSink(onBytes?: (n: number) => void): Writable & ChunkSink {
  const w = new Writable({
    highWaterMark: 4 << 20,
    write(chunk: Buffer, _enc, cb) {
      onBytes?.(chunk.length);
      cb();
    },
  });
  return Object.assign(w, { put: (chunk: Buffer) => void onBytes?.(chunk.length), [CHUNK_SINK]: true as const });
}

/** Open a COSI image by URL or path (the library's entry point). */
export function open(urlOrPath: string, opts: OpenOptions = {}): Promise<CosiImage> {
  return CosiImage.open(urlOrPath, opts);
}
