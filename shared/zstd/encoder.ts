/** zstd encoding for the writer: node:zlib where present, the zstd program otherwise. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { CosiError, isCosiError } from '../errors.js';
import { hasNodeZstd } from './backends.js';
import { BIG_CHUNK, readFrameHeader, SKIPPABLE_MIN } from './frame.js';

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
}

export interface CompressResult {
  compressedSize: number;
  uncompressedSize: number;
  /** SHA-384 (hex) of the bytes written, skippable frame included. */
  sha384: string;
  /** The window log the written frame declares (zstd shrinks it for small inputs). */
  windowLog: number;
}

/**
 * Compresses a byte range of a file into `output` as one zstd frame with
 * content size and checksum, streaming throughout.
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

  try {
    const src =
      typeof input === 'string' ? { path: input, offset: 0, length: (await stat(input)).size } : input;

    const hash = createHash('sha384');
    let compressedSize = 0;
    const head: Buffer[] = [];
    let headLen = 0;
    const out = createWriteStream(output);
    if (opts.skippableId) {
      const skip = Buffer.alloc(24);
      skip.writeUInt32LE(SKIPPABLE_MIN, 0);
      skip.writeUInt32LE(16, 4);
      opts.skippableId.copy(skip, 8);
      hash.update(skip);
      compressedSize += skip.length;
      out.write(skip);
    }
    // Hash exactly what goes to disk, and keep the frame header to learn the real window.
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        compressedSize += chunk.length;
        if (headLen < 18) {
          head.push(chunk.subarray(0, 18 - headLen));
          headLen += Math.min(chunk.length, 18 - headLen);
        }
        cb(null, chunk);
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
      await pipeline(source(), counter, enc, tap, out);
    } else {
      await compressWithProgram(source().pipe(counter), tap, out, level, windowLog, src.length);
    }

    if (readBytes !== src.length) {
      throw new CosiError('COSI_ERR_IO', `${src.path}: read ${readBytes} bytes, expected ${src.length}`);
    }
    const header = readFrameHeader(Buffer.concat(head));
    if (header?.kind !== 'frame') {
      throw new CosiError('COSI_ERR_INTERNAL', 'zstd encoder wrote no frame header');
    }
    return { compressedSize, uncompressedSize: src.length, sha384: hash.digest('hex'), windowLog: header.windowLog };
  } catch (err) {
    if (isCosiError(err)) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new CosiError('COSI_ERR_IO', `zstd compression failed: ${msg}`, { cause: err });
  }
}

async function compressWithProgram(
  input: Readable,
  tap: Transform,
  out: Writable,
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
    await Promise.all([pipeline(input, child.stdin), pipeline(child.stdout, tap, out)]);
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
