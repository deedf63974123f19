/**
 * Decoder backends; one instance decodes exactly one frame. node:zlib where
 * the runtime has it (fast), fzstd otherwise (pure JavaScript).
 */
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import * as zlib from 'node:zlib';
import type { Decompress } from 'fzstd';
import type { XXHash, XXHashAPI } from 'xxhash-wasm';
import { CosiError, isCosiError } from '../errors.js';
import { BIG_CHUNK } from './frame.js';

// ---------------------------------------------------------------------------
// Backends: one instance decodes exactly one frame.

export interface FrameDecoder {
  write(bytes: Buffer): Promise<void> | void;
  finish(): Promise<void> | void;
  /** Called when the consumer wants more output. */
  resume(): void;
  /**
   * Low 32 bits of XXH64 of the frame's output, for frames with a stored
   * checksum to be compared by the caller; undefined when the backend checks it itself.
   */
  contentChecksum(): number | undefined;
  destroy(): void;
}

/** Output sink: returns false when the consumer is full (the backend should pause). */
export type Emit = (bytes: Buffer) => boolean;

export function zstdError(err: unknown): Error {
  if (isCosiError(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new CosiError('COSI_ERR_ZSTD', `corrupt zstd data: ${msg}`, { cause: err });
}

export class NodeFrameDecoder implements FrameDecoder {
  private readonly inner: zlib.ZstdDecompress;
  private failure: Error | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  private fed = 0;

  constructor(maxWindowLog: number, emit: Emit) {
    this.inner = zlib.createZstdDecompress({
      // 16 KiB default output chunks cost about 3x in throughput.
      chunkSize: BIG_CHUNK,
      params: { [zlib.constants.ZSTD_d_windowLogMax]: Math.min(31, Math.max(10, maxWindowLog)) },
      // A 16 KiB input buffer makes every network-sized chunk wait for a drain round trip
      // (1 GiB decoded: 1.31 s -> 1.10 s). Stream options are passed through, though not typed.
      ...({ writableHighWaterMark: BIG_CHUNK } as object),
    });
    this.inner.on('data', (b: Buffer) => {
      if (this.failure) return;
      try {
        if (!emit(b)) this.inner.pause();
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.inner.on('error', (err) => this.fail(zstdError(err)));
    this.inner.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.inner.on('drain', () => this.notify());
  }

  async write(bytes: Buffer): Promise<void> {
    this.check();
    this.fed += bytes.length;
    if (!this.inner.write(bytes)) await this.until(() => !this.inner.writableNeedDrain);
  }

  async finish(): Promise<void> {
    this.check();
    this.inner.end();
    await this.until(() => this.ended);
    // node:zlib silently ends at the first frame end; we feed one frame, so it must eat it all.
    if (this.inner.bytesWritten !== this.fed) {
      throw new CosiError(
        'COSI_ERR_ZSTD',
        `corrupt zstd data: decoder stopped after ${this.inner.bytesWritten} of ${this.fed} frame bytes`,
      );
    }
  }

  resume(): void {
    if (!this.failure && !this.ended) this.inner.resume();
  }

  /** libzstd verifies Content_Checksum itself (ZSTD_d_forceIgnoreChecksum is off) and fails the stream. */
  contentChecksum(): undefined {
    return undefined;
  }

  destroy(): void {
    this.inner.destroy();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.inner.destroy();
    this.notify();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async until(cond: () => boolean): Promise<void> {
    for (;;) {
      this.check();
      if (cond()) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

let xxhashApi: Promise<XXHashAPI> | undefined;
/** Loaded on the first fzstd frame: a runtime with node:zlib zstd never needs it (20 ms of start-up). */
let fzstd: typeof import('fzstd') | undefined;

export class FzstdFrameDecoder implements FrameDecoder {
  private readonly d: Decompress;
  private full = false;
  private wake: (() => void) | undefined;
  /** fzstd never looks at the stored checksum, so we hash what it produces. */
  private hash: XXHash<bigint> | undefined;

  constructor(emit: Emit) {
    fzstd ??= createRequire(import.meta.url)('fzstd') as typeof import('fzstd');
    this.d = new fzstd.Decompress((data) => {
      if (data.length === 0) return;
      this.hash!.update(data);
      // fzstd hands out a fresh array per block, so wrapping without a copy is safe.
      if (!emit(Buffer.from(data.buffer, data.byteOffset, data.length))) this.full = true;
    });
  }

  /**
   * fzstd decodes everything pushed in one synchronous call, so memory stays
   * bounded only because the scanner hands us at most one block per call
   * (<= 128 KiB of output) and we wait for the consumer before the next.
   */
  async write(bytes: Buffer): Promise<void> {
    // The WebAssembly module compiles once per process, on the first fzstd frame.
    this.hash ??= (await (xxhashApi ??= import('xxhash-wasm').then((x) => x.default()))).create64(0n);
    if (this.full) await new Promise<void>((r) => (this.wake = r));
    this.push(bytes, false);
  }

  finish(): void {
    this.push(new Uint8Array(0), true);
  }

  resume(): void {
    this.full = false;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  contentChecksum(): number {
    return this.hash ? Number(this.hash.digest() & 0xffffffffn) : 0;
  }

  destroy(): void {}

  private push(chunk: Uint8Array, final: boolean): void {
    try {
      this.d.push(chunk, final);
    } catch (err) {
      throw zstdError(err);
    }
  }
}

export function hasNodeZstd(): boolean {
  return typeof zlib.createZstdDecompress === 'function' && zlib.constants.ZSTD_d_windowLogMax !== undefined;
}

let program: string | null | undefined;

/** The zstd program on PATH, or undefined; looked up once, without running it. */
export function zstdProgram(): string | undefined {
  if (program === undefined) {
    program = null;
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (!dir) continue;
      const candidate = join(dir, 'zstd');
      try {
        accessSync(candidate, constants.X_OK);
        program = candidate;
        break;
      } catch {
        // not here
      }
    }
  }
  return program ?? undefined;
}
