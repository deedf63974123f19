/**
 * A child process's stdout read into one reused buffer.
 *
 * Node reads a 'pipe' stdio into a fresh 64 KiB buffer per read. On this
 * kind of VM every first touch of fresh memory is a costly page fault, and
 * for a decode lane that was most of the client's CPU: 192 MiB of zstd
 * output read as 'data' events took 1.2-1.4 CPU s in all, the same output
 * read into one reused buffer 0.9-1.0 s (node 20, load average 8; perf put
 * a third of the client's samples in page faults under read()). net.Socket
 * can read into a caller's buffer (its `onread` option), but only for a
 * socket it opens itself, so the child writes into a FIFO whose read end is
 * such a socket. The FIFO's name exists only while both ends are opened.
 *
 * Where no FIFO can be made (no mkfifo program, a read-only tmpdir), the
 * child gets a plain pipe, read as 'data' events.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

/** Reads of a FIFO return at most its 64 KiB capacity; a larger buffer would only sit idle. */
const READ_BUF = 64 << 10;

let fifosWork = true;

/** Both ends of a fresh FIFO, or undefined where one cannot be made. */
function fifo(): { read: number; write: number } | undefined {
  if (!fifosWork) return undefined;
  let dir: string | undefined;
  let read: number | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'cosi-lane-'));
    const path = join(dir, 'out');
    execFileSync('mkfifo', ['-m', '600', path], { stdio: 'ignore' });
    // Non-blocking, so the open does not wait for a writer; the write end then opens at once.
    read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    return { read, write: openSync(path, constants.O_WRONLY) };
  } catch {
    if (read !== undefined) closeSync(read);
    fifosWork = false;
    return undefined;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

export interface ChildOutput {
  /** What to give spawn() as the child's stdout. */
  stdio: number | 'pipe';
  /**
   * Starts reading once the child is spawned (with `piped`, its stdout when
   * `stdio` was 'pipe'): `onData` gets each read, valid only until it
   * returns. The returned stream closes after the last byte.
   */
  start(piped: Readable | null, onData: (b: Buffer) => void): Readable;
  /** Closes what start() would have used, when the child never started. */
  abandon(): void;
}

export function childOutput(): ChildOutput {
  const f = fifo();
  if (!f) {
    return {
      stdio: 'pipe',
      start: (piped, onData) => piped!.on('data', onData),
      abandon: () => {},
    };
  }
  return {
    stdio: f.write,
    start(_piped, onData) {
      // The child holds its own copy of the write end; ours would keep the FIFO from ever ending.
      closeSync(f.write);
      const buffer = Buffer.allocUnsafe(READ_BUF);
      const s = new Socket({
        fd: f.read,
        readable: true,
        writable: false,
        onread: {
          buffer,
          callback: (n: number, b: Uint8Array) => {
            onData(Buffer.from(b.buffer, b.byteOffset, n));
            return true;
          },
        },
      });
      // A FIFO socket reports only what a socket would; the lane learns of failures from the child's exit.
      s.on('error', () => {});
      return s;
    },
    abandon() {
      closeSync(f.write);
      closeSync(f.read);
    },
  };
}
