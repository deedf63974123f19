/**
 * ProcessFileSink: the zstd program decoding into the output file's own
 * descriptor (Node 20's path for a partition written to a file). The bytes,
 * the holes and the reports; the limits that ProcessDecoder enforces by
 * counting, kept here by frame headers, the file's size and the program's own
 * count; corrupt and cut input; and a destroyed sink outliving its child.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCosiError } from '../shared/errors.js';
import type { WriteReport } from '../shared/transport/positional-write.js';
import { canDecodeIntoFile, ProcessFileSink } from '../shared/zstd/process-file.js';
import { zstdProgram } from '../shared/zstd/index.js';

const skip = zstdProgram() ? false : 'the zstd program is not installed';
let dir: string;
let real: Buffer;
let n = 0;

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'cosi-process-file-'));
  // Real bytes: libraries, as partitions hold.
  real = execFileSync('sh', ['-c', 'find /usr/lib -type f -size +64k 2>/dev/null | sort | head -100 | xargs cat 2>/dev/null | head -c 2097152'], { maxBuffer: 8 << 20 });
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** zstd's output for `plain` (`--stream-size` declares the size, as file input would; without it, none). */
function zstd(plain: Buffer, declare = true): Buffer {
  return execFileSync(zstdProgram()!, ['-q', '-c', '-3', ...(declare ? [`--stream-size=${plain.length}`] : [])], { input: plain, maxBuffer: 256 << 20 });
}

/** A file sized to `size` (as cosi-fetch sizes its output) and a sink decoding into it. */
function fileSink(expectedSize: number, size = expectedSize) {
  const path = join(dir, `out-${n++}`);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  const reports: WriteReport[] = [];
  const sink = new ProcessFileSink({ maxWindowLog: 27, expectedSize, target: { fd, position: 0, sparse: true, label: 'test image' }, onWritten: (r) => reports.push(r) });
  const outcome = new Promise<Error | undefined>((resolve) => {
    sink.on('error', resolve);
    sink.on('finish', () => resolve(undefined));
  });
  return {
    path,
    fd,
    sink,
    reports,
    async done(): Promise<Error | undefined> {
      const err = await outcome;
      if (!sink.closed) await once(sink, 'close');
      closeSync(fd);
      return err;
    },
  };
}

function assertCode(err: Error | undefined, code: string, re?: RegExp): void {
  assert.ok(err, `expected ${code}, got success`);
  assert.ok(isCosiError(err), `expected a CosiError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (re) assert.match(err.message, re);
}

test('decodes into the file: the bytes, holes left for zero runs, and reports that add up to the image', { skip }, async () => {
  const plain = Buffer.concat([real.subarray(0, 1 << 20), Buffer.alloc(4 << 20), real.subarray(1 << 20), Buffer.alloc((64 << 10) + 100)]);
  const f = fileSink(plain.length);
  f.sink.end(zstd(plain));
  assert.equal(await f.done(), undefined);
  assert.ok(readFileSync(f.path).equals(plain));
  const sum = f.reports.reduce((x, r) => ({ bytes: x.bytes + r.bytes, holes: x.holes + r.holes }), { bytes: 0, holes: 0 });
  assert.equal(sum.bytes, plain.length);
  const allocated = fstatSync(openSync(f.path, 'r')).blocks * 512;
  assert.ok(allocated < real.length + (1 << 20), `zero runs are holes: ${allocated} bytes allocated for ${real.length} of data`);
  assert.equal(sum.holes, plain.length - allocated);
});

test('only a regular file from its first byte', { skip }, () => {
  const path = join(dir, `pos-${n++}`);
  const fd = openSync(path, 'w');
  assert.equal(canDecodeIntoFile({ fd, position: 0, sparse: true, label: 'x' }), true);
  assert.equal(canDecodeIntoFile({ fd, position: 4096, sparse: true, label: 'x' }), false);
  closeSync(fd);
  const fifo = join(dir, `fifo-${n++}`);
  execFileSync('mkfifo', [fifo]);
  const rd = openSync(fifo, 'r+');
  assert.equal(canDecodeIntoFile({ fd: rd, position: 0, sparse: true, label: 'x' }), false);
  closeSync(rd);
});

test('more than the image: a frame declaring too much is refused before the child sees it; an undeclared frame after the whole image too', { skip }, async () => {
  const early = fileSink(real.length - 1);
  early.sink.end(zstd(real));
  assertCode(await early.done(), 'COSI_ERR_SIZE_MISMATCH', /longer than the expected/);
  assert.equal(fstatSync(openSync(early.path, 'r')).blocks, 0, 'nothing was written');
  // The whole image, then 64 MiB of zeros in a frame that declares no size: a bomb the file's size would not show.
  const part = real.subarray(0, 1 << 20);
  const bomb = fileSink(part.length);
  bomb.sink.end(Buffer.concat([zstd(part), zstd(Buffer.alloc(64 << 20), false)]));
  assertCode(await bomb.done(), 'COSI_ERR_SIZE_MISMATCH', /a frame follows the frames that declare all of it/);
  assert.equal(fstatSync(openSync(bomb.path, 'r')).size, part.length);
});

test('less than the image: caught at the end by the program\'s own count', { skip }, async () => {
  const f = fileSink(real.length + 1);
  f.sink.end(zstd(real));
  assertCode(await f.done(), 'COSI_ERR_SIZE_MISMATCH', new RegExp(`expected ${real.length + 1}`));
});

test('corrupt and cut input: COSI_ERR_ZSTD in the program\'s words, never its banner', { skip }, async () => {
  const z = zstd(real);
  const bad = Buffer.from(z);
  bad.fill(0xff, 40, 400);
  const f = fileSink(real.length);
  f.sink.end(bad);
  const err = await f.done();
  assertCode(err, 'COSI_ERR_ZSTD', /^corrupt zstd data: /);
  assert.doesNotMatch(err!.message, /\*\*\*|Zstandard CLI|bytes\s*$/);
  const cut = fileSink(real.length);
  cut.sink.end(z.subarray(0, z.length >> 1));
  assertCode(await cut.done(), 'COSI_ERR_ZSTD', /truncated/);
});

test('a destroyed sink closes only once its child is gone, so the file can be removed', { skip }, async () => {
  const plain = Buffer.concat(Array.from({ length: 16 }, () => real));
  const f = fileSink(plain.length);
  const z = zstd(plain);
  f.sink.write(z.subarray(0, z.length >> 1));
  f.sink.destroy();
  await once(f.sink, 'close');
  const size = fstatSync(f.fd).size;
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(fstatSync(f.fd).size, size, 'nothing is written after close');
  closeSync(f.fd);
  writeFileSync(f.path, '');
});
