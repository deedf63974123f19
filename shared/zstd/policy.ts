/**
 * The rules every decode of ours enforces, whichever engine runs it: the
 * window ceiling, fzstd's own limit, the exact output size (a decompression
 * bomb is refused as soon as it passes the expected size), each frame's
 * declared content size, and a stream that ends on a frame boundary.
 */
import { CosiError } from '../errors.js';
import { hasNodeZstd, zstdProgram } from './backends.js';
import { FZSTD_MAX_WINDOW, type FrameHeader, type FrameScanner, type ZstdBackend } from './frame.js';

export interface ZstdDecoderOptions {
  /** Frames declaring a larger window than 2^maxWindowLog are refused. */
  maxWindowLog: number;
  /** Exact expected output size; more or less is COSI_ERR_SIZE_MISMATCH. */
  expectedSize?: number;
  backend?: 'auto' | ZstdBackend;
}

type Frame = Extract<FrameHeader, { kind: 'frame' }>;

const BACKENDS: readonly ZstdBackend[] = ['node', 'zstd', 'fzstd'];

/**
 * Below this many output bytes a process costs more than it saves: starting
 * the zstd program takes about 40 ms, in which fzstd decodes some 8 MiB (the
 * primary-GPT image every open and every index decodes is 17 KiB).
 */
const PROGRAM_MIN_BYTES = 8 << 20;

/**
 * What backend 'auto' picks: node:zlib where the runtime has it, else the
 * zstd program when installed (for outputs not known to be small), else
 * fzstd. COSI_ZSTD_DECODER names one instead (benchmarks compare them; an
 * unusable choice is an error, not a silent fallback).
 */
export function zstdBackend(expectedSize?: number): ZstdBackend {
  const forced = process.env.COSI_ZSTD_DECODER;
  if (forced) {
    if (!(BACKENDS as readonly string[]).includes(forced)) {
      throw new CosiError('COSI_ERR_USAGE', `COSI_ZSTD_DECODER must be ${BACKENDS.join(', ')}, got ${JSON.stringify(forced)}`);
    }
    return forced as ZstdBackend;
  }
  if (hasNodeZstd()) return 'node';
  const small = expectedSize !== undefined && expectedSize < PROGRAM_MIN_BYTES;
  return !small && zstdProgram() ? 'zstd' : 'fzstd';
}

/** The decoder's name for reports (--json, inspect). */
export function decoderName(backend: ZstdBackend = zstdBackend()): string {
  return backend === 'node' ? 'node:zlib' : backend === 'zstd' ? 'zstd program' : 'fzstd';
}

export class DecodePolicy {
  readonly backend: ZstdBackend;
  readonly maxWindowLog: number;
  readonly expectedSize: number | undefined;
  /** Bytes decoded so far, all frames. */
  total = 0;
  /** 1-based number of the frame being decoded. */
  frameNo = 0;
  private frame: Frame | undefined;
  private frameOut = 0;
  /** Content sizes the frame headers declared so far (counted when an expected size is set). */
  declaredTotal = 0;

  constructor(opts: ZstdDecoderOptions) {
    const backend = opts.backend ?? 'auto';
    if (backend === 'node' && !hasNodeZstd()) {
      throw new CosiError('COSI_ERR_UNSUPPORTED', `node:zlib has no zstd on Node ${process.version} (needs >= 22.15)`);
    }
    if (backend === 'zstd' && !zstdProgram()) {
      throw new CosiError('COSI_ERR_UNSUPPORTED', 'the zstd program is not on PATH: install zstd, or run on Node >= 22.15');
    }
    if (!Number.isInteger(opts.maxWindowLog) || opts.maxWindowLog < 10 || opts.maxWindowLog > 31) {
      throw new CosiError('COSI_ERR_USAGE', `maxWindowLog must be an integer from 10 to 31, got ${opts.maxWindowLog}`);
    }
    this.backend = backend === 'auto' ? zstdBackend(opts.expectedSize) : backend;
    this.maxWindowLog = opts.maxWindowLog;
    this.expectedSize = opts.expectedSize;
  }

  /** Runs on every frame header, before the frame's first byte reaches a decoder. */
  readonly checkHeader = (h: Frame): void => {
    if (h.windowSize > 2 ** this.maxWindowLog) {
      throw new CosiError(
        'COSI_ERR_ZSTD',
        `zstd frame needs a ${h.windowSize}-byte window (windowLog ${h.windowLog}), ` +
          `over the allowed maxWindowLog ${this.maxWindowLog} (${2 ** this.maxWindowLog} bytes)`,
        { details: { windowSize: h.windowSize, windowLog: h.windowLog, maxWindowLog: this.maxWindowLog } },
      );
    }
    if (this.backend === 'fzstd' && h.windowSize > FZSTD_MAX_WINDOW) {
      throw new CosiError(
        'COSI_ERR_UNSUPPORTED',
        `zstd frame needs a ${h.windowSize}-byte window (windowLog ${h.windowLog}); ` +
          'the fzstd decoder stops at 2046 MiB: install the zstd program, or run on Node >= 22.15 to use node:zlib',
      );
    }
    // A declared content size lets a bomb be refused before decoding a byte.
    if (h.contentSize !== undefined && this.expectedSize !== undefined) {
      this.declaredTotal += h.contentSize;
      if (this.declaredTotal > this.expectedSize) {
        throw this.tooLong(`its frame headers declare at least ${this.declaredTotal} bytes`);
      }
    }
  };

  startFrame(h: Frame, frameNo: number): void {
    this.frame = h;
    this.frameOut = 0;
    this.frameNo = frameNo;
  }

  /** Every decoded byte is counted here before anyone sees it. */
  count(n: number): void {
    if (this.expectedSize !== undefined && this.total + n > this.expectedSize) {
      throw this.tooLong(`decoding passed ${this.expectedSize} bytes`);
    }
    this.total += n;
    this.frameOut += n;
  }

  /** fzstd does not check Frame_Content_Size and node:zlib is never asked to; checked here for both. */
  endFrame(): void {
    const declared = this.frame?.contentSize;
    if (declared !== undefined && declared !== this.frameOut) {
      throw new CosiError('COSI_ERR_ZSTD', `corrupt zstd data: frame decoded to ${this.frameOut} bytes, its header declares ${declared}`);
    }
    this.frame = undefined;
  }

  /** The input is over: it must have ended between frames, after at least one, at the expected size. */
  finish(scanner: FrameScanner): CosiError | null {
    if (!scanner.atBoundary) return new CosiError('COSI_ERR_ZSTD', 'truncated zstd data: input ends inside a frame');
    if (scanner.framesSeen === 0) return new CosiError('COSI_ERR_ZSTD', 'no zstd frame in input');
    if (this.expectedSize !== undefined && this.total !== this.expectedSize) {
      return new CosiError('COSI_ERR_SIZE_MISMATCH', `zstd output is ${this.total} bytes, expected ${this.expectedSize}`, {
        details: { expected: this.expectedSize, actual: this.total },
      });
    }
    return null;
  }

  checksumMismatch(stored: number, actual: number): CosiError {
    return new CosiError(
      'COSI_ERR_ZSTD',
      `zstd content checksum mismatch in frame ${this.frameNo}: stored ${hex32(stored)}, decoded data hashes to ${hex32(actual)}`,
      { details: { frame: this.frameNo, stored, actual } },
    );
  }

  private tooLong(what: string): CosiError {
    return new CosiError('COSI_ERR_SIZE_MISMATCH', `zstd output is longer than the expected ${this.expectedSize} bytes: ${what}`, {
      details: { expected: this.expectedSize },
    });
  }
}

const hex32 = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
