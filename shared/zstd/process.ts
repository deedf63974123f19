/**
 * The zstd program as a decoder, for runtimes whose node:zlib has no zstd
 * (Node < 22.15): libzstd in a child process decodes at native speed on
 * another core, where fzstd's JavaScript is about four times slower.
 *
 * One process decodes the whole stream (libzstd continues across frames and
 * skips skippable frames itself; a process per frame costs a fresh window
 * each time). Our own frame scanner still reads every header before its bytes
 * reach the child, so the window ceiling and the declared-size check refuse a
 * frame before it is decoded, exactly as for the in-process backends; libzstd
 * checks each frame's content size and checksum; and every output byte is
 * counted against the expected size, so a bomb is cut off at the first byte
 * too many. Destroying the stream kills the child.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { CosiError } from '../errors.js';
import { zstdError, zstdProgram } from './backends.js';
import { BIG_CHUNK, FrameScanner } from './frame.js';
import type { DecodePolicy } from './policy.js';
import { describeSystemError } from '../errno.js';

/** stderr kept for the error message: the program's last words, not a flood. */
const STDERR_KEEP = 4096;

/**
 * Passes `chunk` to a zstd child's stdin once its frame headers are read (a
 * refused frame never reaches the child), and calls `cb` when more may be
 * written: at once, or once the pipe drained, with the failure known by then.
 * A closed pipe means the child is gone: its exit status, not EPIPE, says why.
 */
export function toChild(scanner: FrameScanner, stdin: Writable, chunk: Buffer, failure: () => Error | undefined, cb: (err?: Error | null) => void): void {
  if (failure()) return cb(failure());
  try {
    scanner.feed(chunk);
  } catch (err) {
    return cb(zstdError(err));
  }
  if (stdin.destroyed || stdin.write(chunk)) return cb(failure());
  const onDrain = (): void => {
    stdin.off('close', onDrain);
    stdin.off('drain', onDrain);
    cb(failure());
  };
  stdin.once('drain', onDrain);
  stdin.once('close', onDrain);
}

export class ProcessDecoder extends Transform {
  private readonly scanner: FrameScanner;
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private stderr = '';
  private failure: Error | undefined;
  private flushing = false;
  private readonly exited: Promise<number | null>;
  private readonly drained: Promise<void>;

  constructor(private readonly policy: DecodePolicy) {
    super({ readableHighWaterMark: BIG_CHUNK, writableHighWaterMark: BIG_CHUNK });
    this.scanner = new FrameScanner(policy.checkHeader, false);
    const bin = zstdProgram();
    if (!bin) throw new CosiError('COSI_ERR_UNSUPPORTED', 'the zstd program is not on PATH; install zstd or run on Node >= 22.15');
    // --memory is libzstd's own window ceiling, a second guard behind the scanner's check.
    this.child = spawn(bin, ['-d', '-c', '-q', `--memory=${2 ** policy.maxWindowLog}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    if (!this.child.stdin || !this.child.stdout || !this.child.stderr) {
      // Out of descriptors (EMFILE): spawn returns without pipes and reports 'error' a tick later, to nobody.
      this.child.once('error', () => {});
      throw new CosiError('COSI_ERR_IO', `cannot start ${bin}: no file descriptors or processes left; retry later`);
    }
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.fail(new CosiError('COSI_ERR_UNSUPPORTED', `cannot run ${bin}: ${describeSystemError(err)}`, { cause: err }));
        resolve(null);
      });
      this.child.once('close', (code) => {
        // Dying before its input ended is the data's fault (a cut input only shows at the end).
        if (code !== 0 && !this.flushing) this.fail(this.programError(code));
        resolve(code);
      });
    });
    // A child that dies early breaks the pipe; its exit status says why, not EPIPE.
    this.child.stdin.on('error', () => {});
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-STDERR_KEEP);
    });
    this.child.stdout.on('data', (b: Buffer) => {
      if (this.failure) return;
      try {
        this.policy.count(b.length);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      if (!this.push(b)) this.child.stdout.pause();
    });
    this.drained = new Promise((resolve) => this.child.stdout.once('close', resolve));
  }

  override _read(size: number): void {
    this.child.stdout.resume();
    super._read(size);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    toChild(this.scanner, this.child.stdin, chunk, () => this.failure, cb);
  }

  override _flush(cb: TransformCallback): void {
    this.flushing = true;
    this.child.stdin.end();
    void Promise.all([this.exited, this.drained]).then(([code]) => {
      if (this.failure) return cb(this.failure);
      // Input cut inside a frame, or no frame at all: said the same way as by the other backends.
      const ending = this.scanner.atBoundary && this.scanner.framesSeen > 0 ? null : this.policy.finish(this.scanner);
      if (ending) return cb(ending);
      if (code !== 0) return cb(this.programError(code));
      cb(this.policy.finish(this.scanner));
    });
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    cb(err);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.child.kill('SIGKILL');
    this.destroy(err);
  }

  private programError(code: number | null): CosiError {
    return programError(this.stderr, code);
  }
}

/** The zstd program's `-v` summary line, `NAME : N bytes`: what it decoded in all. */
export const PROGRAM_SUMMARY = /:\s*(\d+) bytes\s*$/m;

/** The program's complaint in its stderr as one line, without its prefixes, its `-v` banner and summary. */
export function programWords(stderr: string): string | undefined {
  return (
    stderr
      .split(/[\r\n]/)
      .map((l) => l.replace(/^zstd:\s*/, '').replace(/^\/\*stdin\*\\?\s*:\s*/, '').trim())
      // Its advice names its own flags ("Use --long=..."), which mean nothing to our user.
      .find((l) => l !== '' && !/^\*\*\*/.test(l) && !/^Use --/.test(l) && !PROGRAM_SUMMARY.test(l))
  );
}

/** The program's failure: corrupt data is a format error like any backend's. */
export function programError(stderr: string, code: number | null): CosiError {
  return new CosiError('COSI_ERR_ZSTD', `corrupt zstd data: ${programWords(stderr) ?? `the zstd program exited with ${code ?? 'a signal'}`}`);
}
