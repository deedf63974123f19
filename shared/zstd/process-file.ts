/**
 * The zstd program decoding straight into the output file: its stdout is the
 * file's own descriptor, so no decoded byte crosses a pipe into this process
 * or is written from its main thread. Node 20's cosi-fetch then does what the
 * native `curl | tee >(sha384sum) | zstd -d -o FILE` pipeline does: receive,
 * hash, pass on. A prototype of it took 3.8-4.1 CPU s for the 1 GiB root
 * against 7.5-8 CPU s through ProcessDecoder and the main thread's writes
 * (load average 4-5).
 *
 * Only for a regular file written from its first byte, through a descriptor
 * nobody has moved (we write with positions only, so its offset is 0): the
 * child's writes start at that offset; and only for an image whose first frame
 * declares the whole image's size (the caller checks). The guarantees are
 * ProcessDecoder's, kept another way:
 * - frame headers are read here before a byte reaches the child (window
 *   ceiling, declared sizes against the expected size, which libzstd holds
 *   each frame to), and a frame declaring no size after frames that declare
 *   the whole image is refused: so no bomb reaches the child;
 * - the output cannot be counted byte by byte, so the file's size is watched
 *   as well: past what the file was sized to, the child is killed at once;
 * - at the end, the child's own count of what it decoded (its `-v` summary)
 *   must be the expected size, and the input must have ended between frames.
 * Progress is the file's allocated bytes, as the kernel reports them.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { fstat, fstatSync } from 'node:fs';
import { Writable, type Readable, type Writable as WritableType } from 'node:stream';
import { CosiError } from '../errors.js';
import { describeSystemError } from '../errno.js';
import type { WriteReport, WriteTarget } from '../transport/positional-write.js';
import { zstdProgram } from './backends.js';
import { FrameScanner } from './frame.js';
import { DecodePolicy } from './policy.js';
import { programError, programWords, PROGRAM_SUMMARY, toChild } from './process.js';

const STDERR_KEEP = 4096;
/** How often the output's size and allocation are read. */
const WATCH_MS = 100;

export interface ProcessFileSinkOptions {
  maxWindowLog: number;
  expectedSize: number;
  target: WriteTarget;
  onWritten: (r: WriteReport) => void;
}

/** Whether the zstd program can decode into this target itself: a regular file, from its first byte. */
export function canDecodeIntoFile(target: WriteTarget): boolean {
  if (target.position !== 0 || !zstdProgram()) return false;
  try {
    return fstatSync(target.fd).isFile();
  } catch {
    return false;
  }
}

export class ProcessFileSink extends Writable {
  private readonly policy: DecodePolicy;
  private readonly scanner: FrameScanner;
  private readonly child: ChildProcessByStdio<WritableType, null, Readable>;
  private readonly exited: Promise<number | null>;
  private readonly watch: NodeJS.Timeout;
  /** The file may not grow past this: what it was sized to, or the expected size if more. */
  private readonly ceiling: number;
  private stderr = '';
  private failure: Error | undefined;
  private flushing = false;
  /** Allocated bytes reported so far, as kernel writes and (up to the expected size) as bytes. */
  private reported = 0;
  private reportedBytes = 0;

  constructor(private readonly o: ProcessFileSinkOptions) {
    super({ highWaterMark: 1 << 20 });
    this.policy = new DecodePolicy({ maxWindowLog: o.maxWindowLog, expectedSize: o.expectedSize, backend: 'zstd' });
    // Output past the expected size cannot be seen as it is written (a run of zeros is only a seek):
    // frames are held to their declared sizes, and once those reach the image, a frame that declares none is too much.
    this.scanner = new FrameScanner((h) => {
      if (h.contentSize === undefined && this.policy.declaredTotal >= o.expectedSize) {
        throw new CosiError('COSI_ERR_SIZE_MISMATCH', `zstd output is longer than the expected ${o.expectedSize} bytes: a frame follows the frames that declare all of it`, { details: { expected: o.expectedSize } });
      }
      this.policy.checkHeader(h);
    }, false);
    this.ceiling = Math.max(fstatSync(o.target.fd).size, o.expectedSize);
    const bin = zstdProgram()!;
    // -v: the summary line with the decoded size; --memory: libzstd's own window ceiling behind the header check.
    const args = ['-d', '-c', '-v', o.target.sparse ? '--sparse' : '--no-sparse', `--memory=${2 ** o.maxWindowLog}`];
    this.child = spawn(bin, args, { stdio: ['pipe', o.target.fd, 'pipe'] }) as typeof this.child;
    if (!this.child.stdin || !this.child.stderr) {
      this.child.once('error', () => {});
      throw new CosiError('COSI_ERR_IO', `cannot start ${bin}: no file descriptors or processes left; retry later`);
    }
    this.child.stdin.on('error', () => {});
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-STDERR_KEEP)));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.fail(new CosiError('COSI_ERR_UNSUPPORTED', `cannot run ${bin}: ${describeSystemError(err)}`, { cause: err }));
        resolve(null);
      });
      this.child.once('close', (code) => {
        clearInterval(this.watch);
        if (code !== 0 && !this.flushing) this.fail(programError(this.stderr, code));
        resolve(code);
      });
    });
    this.watch = setInterval(() => this.look(), WATCH_MS);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    toChild(this.scanner, this.child.stdin, chunk, () => this.failure, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.flushing = true;
    this.child.stdin.end();
    void this.exited.then((code) => {
      if (this.failure) return cb(this.failure);
      const ending = this.scanner.atBoundary && this.scanner.framesSeen > 0 ? null : this.policy.finish(this.scanner);
      if (ending) return cb(ending);
      if (code !== 0) return cb(programError(this.stderr, code));
      const said = PROGRAM_SUMMARY.exec(this.stderr)?.[1];
      if (said === undefined) return cb(new CosiError('COSI_ERR_INTERNAL', `the zstd program did not say how many bytes it decoded (${programWords(this.stderr) ?? 'no summary line'})`));
      try {
        this.policy.count(Number(said));
      } catch (err) {
        return cb(err as Error);
      }
      const sizeError = this.policy.finish(this.scanner);
      if (sizeError) return cb(sizeError);
      const allocated = this.allocated();
      this.o.onWritten({ bytes: this.o.expectedSize - this.reportedBytes, holes: Math.max(0, this.o.expectedSize - allocated), kernel: Math.max(0, allocated - this.reported) });
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    clearInterval(this.watch);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    // The caller may remove the file once we are gone: the child must be gone first.
    void this.exited.then(() => cb(err));
  }

  /** The output's size against the ceiling, and its allocation as progress (holes are counted at the end). */
  private look(): void {
    fstat(this.o.target.fd, (err, st) => {
      if (err || this.failure || this.flushing) return;
      if (st.size > this.ceiling) {
        this.fail(new CosiError('COSI_ERR_SIZE_MISMATCH', `zstd output is longer than the expected ${this.o.expectedSize} bytes: the file grew to ${st.size}`, { details: { expected: this.o.expectedSize } }));
        return;
      }
      const allocated = st.blocks * 512;
      if (allocated > this.reported) {
        const bytes = Math.max(0, Math.min(allocated, this.o.expectedSize) - this.reportedBytes);
        this.o.onWritten({ bytes, holes: 0, kernel: allocated - this.reported });
        this.reported = allocated;
        this.reportedBytes += bytes;
      }
    });
  }

  private allocated(): number {
    try {
      return fstatSync(this.o.target.fd).blocks * 512;
    } catch {
      return this.reported;
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.child.kill('SIGKILL');
    this.destroy(err);
  }

}
