/** zstd encoding for the writer: node:zlib where present, the zstd program otherwise. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { CosiError, isCosiError } from '../errors.js';
import { hasNodeZstd } from './backends.js';
import { BIG_CHUNK, readFrameHeader, SKIPPABLE_MIN } from './frame.js';
import { encodeSeekTable, MAX_FRAME_DECOMPRESSED, type SeekEntry } from './seek-table.js';

/** Smaller frames cost more in size than they could ever gain in parallelism. */
export const MIN_FRAME_SIZE = 64 << 10;

// ---------------------------------------------------------------------------
// Encoding

let zstdProgram: boolean | undefined;
function hasZstdProgram(): boolean {
  zstdProgram ??= spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;
  return zstdProgram;
}

export interface CompressOptions {
  level?: number;
  windowLog?: number;
  /** 16 bytes (the COSI id) stored in a leading skippable frame, as real writers do. */
  skippableId?: Buffer;
  /**
   * Split the input into independent frames of this many uncompressed bytes
   * and end with a seek table (zstd's seekable format); one frame and no table
   * when absent.
   */
  frameSize?: number;
}

export interface CompressResult {
  compressedSize: number;
  uncompressedSize: number;
  /** SHA-384 (hex) of the bytes written, skippable frame included. */
  sha384: string;
  /** The largest window log any written frame declares (zstd shrinks it for small inputs). */
  windowLog: number;
  /** zstd frames written (skippable frames not counted). */
  frames: number;
}

/**
 * Compresses a byte range of a file into `output` as one zstd frame with
 * content size and checksum (or, with frameSize, as independent frames and a
 * seek table), streaming throughout.
 */
export async function compressFile(
  input: string | { path: string; offset: number; length: number },
  output: string,
  opts: CompressOptions = {},
): Promise<CompressResult> {
  const level = opts.level ?? 9;
  const windowLog = opts.windowLog ?? 27;
  if (!Number.isInteger(level) || level < 1 || level > 22) {
    throw new CosiError('COSI_ERR_USAGE', `zstd level must be an integer from 1 to 22, got ${level}`);
  }
  if (!Number.isInteger(windowLog) || windowLog < 10 || windowLog > 31) {
    throw new CosiError('COSI_ERR_USAGE', `zstd windowLog must be an integer from 10 to 31, got ${windowLog}`);
  }
  if (opts.skippableId !== undefined && opts.skippableId.length !== 16) {
    throw new CosiError('COSI_ERR_USAGE', `skippableId must be 16 bytes, got ${opts.skippableId.length}`);
  }
  const useNode = hasNodeZstd();
  if (!useNode && !hasZstdProgram()) {
    throw new CosiError(
      'COSI_ERR_UNSUPPORTED',
      'no zstd encoder: install the zstd package or run on Node >= 22.15',
    );
  }

  if (opts.frameSize !== undefined && (!Number.isInteger(opts.frameSize) || opts.frameSize < MIN_FRAME_SIZE || opts.frameSize > MAX_FRAME_DECOMPRESSED)) {
    throw new CosiError('COSI_ERR_USAGE', `frame size must be from ${MIN_FRAME_SIZE} bytes to 1 GiB, got ${opts.frameSize}`);
  }

  const out = await open(output, 'w');
  try {
    const src =
      typeof input === 'string' ? { path: input, offset: 0, length: (await stat(input)).size } : input;

    const hash = createHash('sha384');
    let compressedSize = 0;
    // Hash exactly what goes to disk, in order, with backpressure from the file.
    const put = async (chunk: Buffer): Promise<void> => {
      hash.update(chunk);
      compressedSize += chunk.length;
      await out.write(chunk);
    };
    const entries: SeekEntry[] = [];
    if (opts.skippableId) {
      const skip = Buffer.alloc(24);
      skip.writeUInt32LE(SKIPPABLE_MIN, 0);
      skip.writeUInt32LE(16, 4);
      opts.skippableId.copy(skip, 8);
      await put(skip);
      entries.push({ compressedSize: skip.length, decompressedSize: 0 });
    }
    // Independent frames: each gets its own content size, so zstd sizes its window to the frame.
    const count = opts.frameSize === undefined || src.length === 0 ? 1 : Math.ceil(src.length / opts.frameSize);
    let declared = 0;
    for (let i = 0; i < count; i++) {
      const at = i * (opts.frameSize ?? 0);
      const length = count === 1 ? src.length : Math.min(opts.frameSize!, src.length - at);
      const before = compressedSize;
      const f = await encodeFrame({ path: src.path, offset: src.offset + at, length }, put, useNode, level, windowLog);
      declared = Math.max(declared, f.windowLog);
      entries.push({ compressedSize: compressedSize - before, decompressedSize: length });
    }
    if (opts.frameSize !== undefined) await put(encodeSeekTable(entries));
    await out.close();
    return { compressedSize, uncompressedSize: src.length, sha384: hash.digest('hex'), windowLog: declared, frames: count };
  } catch (err) {
    await out.close().catch(() => {});
    if (isCosiError(err)) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new CosiError('COSI_ERR_IO', `zstd compression failed: ${msg}`, { cause: err });
  }
}

/** One zstd frame of `src`, handed to `put` chunk by chunk; returns the window the frame declares. */
async function encodeFrame(
  src: { path: string; offset: number; length: number },
  put: (chunk: Buffer) => Promise<void>,
  useNode: boolean,
  level: number,
  windowLog: number,
): Promise<{ windowLog: number }> {
  const head: Buffer[] = [];
  let headLen = 0;
  const tap = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (headLen < 18) {
        head.push(chunk.subarray(0, 18 - headLen));
        headLen += Math.min(chunk.length, 18 - headLen);
      }
      put(chunk).then(() => cb(), cb);
    },
  });
  let readBytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      readBytes += chunk.length;
      cb(null, chunk);
    },
  });
  const source = (): Readable =>
    src.length === 0
      ? Readable.from([])
      : createReadStream(src.path, { start: src.offset, end: src.offset + src.length - 1, highWaterMark: BIG_CHUNK });

  if (useNode) {
    const c = zlib.constants;
    const enc = zlib.createZstdCompress({
      chunkSize: BIG_CHUNK,
      pledgedSrcSize: src.length,
      params: {
        [c.ZSTD_c_compressionLevel]: level,
        [c.ZSTD_c_windowLog]: windowLog,
        [c.ZSTD_c_enableLongDistanceMatching]: 1, // what `zstd --long` does
        [c.ZSTD_c_checksumFlag]: 1,
        [c.ZSTD_c_contentSizeFlag]: 1,
      },
    });
    await pipeline(source(), counter, enc, tap);
  } else {
    await compressWithProgram(source().pipe(counter), tap, level, windowLog, src.length);
  }

  if (readBytes !== src.length) {
    throw new CosiError('COSI_ERR_IO', `${src.path}: read ${readBytes} bytes, expected ${src.length}`);
  }
  const header = readFrameHeader(Buffer.concat(head));
  if (header?.kind !== 'frame') {
    throw new CosiError('COSI_ERR_INTERNAL', 'zstd encoder wrote no frame header');
  }
  return { windowLog: header.windowLog };
}

async function compressWithProgram(
  input: Readable,
  tap: Writable,
  level: number,
  windowLog: number,
  length: number,
): Promise<void> {
  // --stream-size gives the frame a content size and lets zstd shrink the window, like a file input.
  const args = ['-q', '-c', `-${level}`, `--long=${windowLog}`, `--stream-size=${length}`];
  if (level > 19) args.unshift('--ultra');
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  try {
    await Promise.all([pipeline(input, child.stdin), pipeline(child.stdout, tap)]);
  } catch (err) {
    child.kill();
    await exited.catch(() => undefined);
    throw err;
  }
  const code = await exited;
  if (code !== 0) {
    throw new CosiError('COSI_ERR_IO', `zstd exited with status ${code}: ${stderr.trim().split('\n')[0] ?? ''}`);
  }
}
