import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCosiError } from '../shared/errors.js';
import { canDecodeInWorker, compressFile, createZstdDecoder, createZstdSink, hasNodeZstd, readFrameHeader, zstdBackend, zstdProgram, type ZstdDecoderOptions } from '../shared/zstd/index.js';
import type { WriteReport, WriteTarget } from '../shared/transport/positional-write.js';

type Backend = 'node' | 'zstd' | 'fzstd';
const backends: Backend[] = ['fzstd', ...(hasNodeZstd() ? ['node' as const] : []), ...(zstdProgram() ? ['zstd' as const] : [])];
/**
 * Each backend through every engine: the Transform (decoder.ts), the worker
 * sink lending its ring (sink.ts, onData), and the worker writing a file
 * itself (sink.ts, target).
 */
interface Mode {
  backend: Backend;
  engine: 'stream' | 'worker' | 'file';
}
const modes: Mode[] = backends.flatMap((backend) => [
  { backend, engine: 'stream' as const },
  ...(canDecodeInWorker(backend) ? [{ backend, engine: 'worker' as const }, { backend, engine: 'file' as const }] : []),
]);
let fileNo = 0;

/** A worker sink writing into a fresh file; `result()` reads the file back once the sink is done. */
function fileSink(o: Omit<ZstdDecoderOptions, 'backend'> & { backend: Backend }, target: Partial<WriteTarget> = {}) {
  const path = join(dir, `out-${fileNo++}`);
  const fd = openSync(path, 'w+');
  const reports: WriteReport[] = [];
  const sink = createZstdSink({
    ...o,
    target: { fd, position: 0, sparse: false, label: 'test image', ...target },
    onWritten: (r) => void reports.push({ ...r }),
  });
  // The fd may be closed only once the sink has closed (the worker has stopped).
  const closed = new Promise<void>((resolve) => sink.once('close', resolve)).then(() => closeSync(fd));
  return {
    sink,
    reports,
    path,
    async result(): Promise<Buffer> {
      await closed;
      const out = readFileSync(path);
      rmSync(path, { force: true });
      return out;
    },
  };
}
const label = (m: Mode) => `${m.backend}/${m.engine}`;

let dir: string;
let realA: Buffer; // ~3 MiB of real binaries
let realB: Buffer; // ~1 MiB of other real binaries
let small: Buffer; // 300 KiB, for the big-window cases
let aZst: Buffer;
let bZst: Buffer;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function sh(script: string, input?: Buffer): Buffer {
  return execFileSync('sh', ['-c', script], { input, maxBuffer: 256 << 20 });
}
/** The real zstd program; input from stdin so no content size is written. */
const zstd = (args: string, input: Buffer) => sh(`zstd -q -c ${args}`, input);

function skippable(payloadLen: number, fill = 0x5a): Buffer {
  const b = Buffer.alloc(8 + payloadLen, fill);
  b.writeUInt32LE(0x184d2a50 + 3, 0);
  b.writeUInt32LE(payloadLen, 4);
  return b;
}

interface Outcome {
  out: Buffer;
  err?: unknown;
}

/** Feeds `input` in `chunk`-sized pieces, collects output and the error if any. */
async function decode(
  input: Buffer,
  mode: Mode,
  opts: { maxWindowLog?: number; expectedSize?: number; chunk?: number } = {},
): Promise<Outcome> {
  const o = {
    maxWindowLog: opts.maxWindowLog ?? 27,
    backend: mode.backend,
    ...(opts.expectedSize === undefined ? {} : { expectedSize: opts.expectedSize }),
  };
  const parts: Buffer[] = [];
  const file = mode.engine === 'file' ? fileSink(o) : undefined;
  // The worker engine lends its buffers: keep copies.
  const dec = file?.sink ?? (mode.engine === 'stream' ? createZstdDecoder(o) : createZstdSink({ ...o, onData: (b) => void parts.push(Buffer.from(b)) }));
  const done = new Promise<unknown>((resolve) => {
    if (mode.engine === 'stream') {
      dec.on('data', (b: Buffer) => parts.push(b));
      dec.on('end', () => resolve(undefined));
    } else dec.on('finish', () => resolve(undefined));
    dec.on('error', resolve);
  });
  const chunk = opts.chunk ?? 65536;
  for (let i = 0; i < input.length && !dec.destroyed; i += chunk) {
    if (!dec.write(input.subarray(i, i + chunk))) {
      await once(dec, 'drain').catch(() => undefined); // an error ends the loop via dec.destroyed
    }
  }
  if (!dec.destroyed) dec.end();
  const err = await done;
  // A file holds what was written before a failure, as the ring's consumer holds what it was given.
  if (file) parts.push(await file.result());
  return err === undefined ? { out: Buffer.concat(parts) } : { out: Buffer.concat(parts), err };
}

/** Like decode, but hashes the output instead of keeping it (for ~100 MiB outputs). */
async function decodeToHash(input: Buffer, mode: Mode, maxWindowLog: number): Promise<{ sha: string; length: number }> {
  const h = createHash('sha256');
  let length = 0;
  const take = (b: Buffer) => {
    h.update(b);
    length += b.length;
  };
  if (mode.engine === 'worker') {
    const sink = createZstdSink({ maxWindowLog, backend: mode.backend, onData: take });
    sink.end(input);
    await once(sink, 'finish');
  } else if (mode.engine === 'file') {
    const f = fileSink({ maxWindowLog, backend: mode.backend });
    f.sink.end(input);
    take(await f.result());
  } else {
    const dec = createZstdDecoder({ maxWindowLog, backend: mode.backend });
    dec.on('data', take);
    const done = once(dec, 'end');
    dec.end(input);
    await done;
  }
  return { sha: h.digest('hex'), length };
}

let farCache: { plain: Buffer; zst: Buffer } | undefined;
/**
 * Data whose only matches lie 97-99 MiB back: 1 MiB of random bytes, 97 MiB
 * of zeros, then the same 1 MiB again in shuffled 1 KiB pieces, so each piece
 * is a sequence with its own offset. An offset of 2^26 + 2^25 or more is what
 * needs all of Offset_Code 26's extra bits (offsets from 64 MiB up would only
 * test the code, not its top bit), and the ~1000 distinct offsets land on
 * every bit alignment in the stream.
 */
function farMatches(): { plain: Buffer; zst: Buffer } {
  if (farCache) return farCache;
  const piece = 1024;
  const a = randomBytes(1 << 20);
  const order = Array.from({ length: a.length / piece }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const plain = Buffer.concat([a, Buffer.alloc(97 << 20), ...order.map((k) => a.subarray(k * piece, (k + 1) * piece))]);
  writeFileSync(join(dir, 'far.bin'), plain);
  sh(`cd ${dir} && zstd -q -1 --long=27 far.bin -o far.zst && rm far.bin`);
  farCache = { plain, zst: readFileSync(join(dir, 'far.zst')) };
  return farCache;
}

/** A copy of a single-frame file with one byte of its trailing 4-byte checksum changed. */
function flipChecksum(zst: Buffer): Buffer {
  const bad = Buffer.from(zst);
  bad[bad.length - 2]! ^= 0x01;
  return bad;
}

function assertCode(o: Outcome, code: string, re?: RegExp): void {
  assert.ok(o.err, `expected ${code}, got success`);
  assert.ok(isCosiError(o.err), `expected CosiError, got ${String(o.err)}`);
  assert.equal(o.err.code, code, o.err.message);
  if (re) assert.match(o.err.message, re);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cosi-zstd-'));
  realA = sh('find /usr/lib -type f -size +64k 2>/dev/null | sort | head -200 | xargs cat 2>/dev/null | head -c 3145728');
  realB = sh('find /usr/bin -type f -size +64k 2>/dev/null | sort | head -50 | xargs cat 2>/dev/null | head -c 1048576');
  assert.equal(realA.length, 3145728);
  assert.equal(realB.length, 1048576);
  small = realA.subarray(1 << 20, (1 << 20) + 300 * 1024);
  writeFileSync(join(dir, 'a.bin'), realA);
  writeFileSync(join(dir, 'b.bin'), realB);
  // File input: single frame with content size and checksum, like real writers.
  sh(`cd ${dir} && zstd -q -6 a.bin -o a.zst && zstd -q -3 b.bin -o b.zst`);
  aZst = readFileSync(join(dir, 'a.zst'));
  bZst = readFileSync(join(dir, 'b.zst'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('readFrameHeader parses frame and skippable headers', () => {
  const h = readFrameHeader(aZst);
  assert.ok(h && h.kind === 'frame');
  assert.equal(h.contentSize, realA.length);
  assert.equal(readFrameHeader(aZst.subarray(0, 3)), undefined);
  const s = readFrameHeader(skippable(16));
  assert.deepEqual(s, { kind: 'skippable', size: 24 });
  // stdin input: no content size, window from the descriptor (--long=30 => 2^30)
  const l = readFrameHeader(zstd('--long=30', Buffer.from('hello world')));
  assert.ok(l && l.kind === 'frame');
  assert.equal(l.contentSize, undefined);
  assert.equal(l.windowSize, 2 ** 30);
  assert.equal(l.windowLog, 30);
  assert.throws(() => readFrameHeader(Buffer.from('garbage!')), (e) => isCosiError(e, 'COSI_ERR_ZSTD'));
});

test('auto backend: node:zlib where it has zstd, else the zstd program when installed, else fzstd', () => {
  assert.equal(zstdBackend(), hasNodeZstd() ? 'node' : zstdProgram() ? 'zstd' : 'fzstd');
  // A small known output (the 17 KiB primary-GPT image every open decodes) never starts a process.
  assert.equal(zstdBackend(17 * 1024), hasNodeZstd() ? 'node' : 'fzstd');
  assert.equal(zstdBackend(64 << 20), zstdBackend());
  if (!hasNodeZstd()) {
    assert.throws(() => createZstdDecoder({ maxWindowLog: 27, backend: 'node' }), (e) => isCosiError(e, 'COSI_ERR_UNSUPPORTED'));
  }
});

for (const mode of modes) {
  const backend = label(mode);
  test(`[${backend}] single frame from the zstd program`, async () => {
    const o = await decode(aZst, mode, { expectedSize: realA.length });
    assert.equal(o.err, undefined);
    assert.equal(sha256(o.out), sha256(realA));
    // tiny chunks: every header straddles chunk boundaries
    const piece = realB.subarray(0, 96 * 1024);
    const t = await decode(Buffer.concat([skippable(16), zstd('-3', piece), skippable(3), zstd('-1', piece)]), mode, { chunk: 7 });
    assert.equal(t.err, undefined);
    assert.equal(sha256(t.out), sha256(Buffer.concat([piece, piece])));
  });

  test(`[${backend}] concatenated frames and skippable frames anywhere`, async () => {
    const want = sha256(Buffer.concat([realA, realB]));
    const cases: Record<string, Buffer> = {
      'cat a.zst b.zst': sh(`cat ${dir}/a.zst ${dir}/b.zst`),
      'leading 24-byte skippable': Buffer.concat([skippable(16), aZst, bZst]),
      'skippable between frames': Buffer.concat([aZst, skippable(1000), bZst]),
      'empty skippable, and one at the end': Buffer.concat([skippable(0), aZst, skippable(5), bZst, skippable(16)]),
    };
    for (const [name, input] of Object.entries(cases)) {
      const o = await decode(input, mode, { expectedSize: realA.length + realB.length });
      assert.equal(o.err, undefined, `${name}: ${String(o.err)}`);
      assert.equal(sha256(o.out), want, name);
    }
    const only = await decode(Buffer.concat([skippable(16), bZst]), mode, { chunk: 4096 + 5 });
    assert.equal(sha256(only.out), sha256(realB));
  });

  test(`[${backend}] window limits (--long=28 and --long=31 streams)`, async () => {
    const long28 = zstd('--long=28', small);
    const h28 = readFrameHeader(long28);
    assert.equal(h28?.kind === 'frame' && h28.windowSize, 2 ** 28);
    const ok = await decode(long28, mode, { maxWindowLog: 28 });
    assert.equal(ok.err, undefined);
    assert.equal(sha256(ok.out), sha256(small));
    assertCode(await decode(long28, mode, { maxWindowLog: 27 }), 'COSI_ERR_ZSTD', /268435456.*windowLog 28.*maxWindowLog 27/);

    const long31 = zstd('--long=31', small);
    assertCode(await decode(long31, mode, { maxWindowLog: 27 }), 'COSI_ERR_ZSTD', /windowLog 31.*maxWindowLog 27/);
    const o = await decode(long31, mode, { maxWindowLog: 31 });
    if (mode.backend !== 'fzstd') {
      assert.equal(o.err, undefined);
      assert.equal(sha256(o.out), sha256(small));
    } else {
      // fzstd's own ceiling is just under 2^31
      assertCode(o, 'COSI_ERR_UNSUPPORTED', /Node >= 22\.15/);
    }
  });

  test(`[${backend}] output is capped at expectedSize`, async () => {
    // 64 MiB of zeros without a content size: only the running count can stop it
    const bomb = zstd('-1', Buffer.alloc(64 << 20));
    assert.ok(bomb.length < 64 * 1024);
    const cap = 1 << 20;
    const o = await decode(bomb, mode, { expectedSize: cap });
    assertCode(o, 'COSI_ERR_SIZE_MISMATCH', /longer than the expected 1048576/);
    assert.ok(o.out.length <= cap, `emitted ${o.out.length} bytes`);
    assert.ok(o.out.every((b) => b === 0));
    // with a content size the header alone is enough
    const early = await decode(aZst, mode, { expectedSize: realA.length - 1 });
    assertCode(early, 'COSI_ERR_SIZE_MISMATCH');
    assert.equal(early.out.length, 0);
    // short output is caught at the end
    assertCode(await decode(aZst, mode, { expectedSize: realA.length + 1 }), 'COSI_ERR_SIZE_MISMATCH', /expected 3145729/);
  });

  if (mode.engine === 'stream') test(`[${backend}] memory stays bounded when nobody reads`, async () => {
    const bomb = zstd('-1', Buffer.alloc(64 << 20));
    const dec = createZstdDecoder({ maxWindowLog: 27, backend: mode.backend });
    dec.on('error', () => undefined);
    dec.write(bomb);
    dec.end();
    await sleep(300);
    assert.ok(dec.readableLength <= 4 << 20, `buffered ${dec.readableLength} bytes`);
    // and it still completes once read
    let n = 0;
    for await (const b of dec) n += (b as Buffer).length;
    assert.equal(n, 64 << 20);
  });

  test(`[${backend}] truncated and corrupt input`, async () => {
    for (const cut of [3, 10, 1000, aZst.length >> 1, aZst.length - 1]) {
      assertCode(await decode(aZst.subarray(0, cut), mode), 'COSI_ERR_ZSTD', /truncated/);
    }
    assertCode(await decode(Buffer.alloc(0), mode), 'COSI_ERR_ZSTD');
    assertCode(await decode(Buffer.concat([aZst, Buffer.from('trailing junk')]), mode), 'COSI_ERR_ZSTD', /magic/);
    // a skippable frame that claims more bytes than there are
    assertCode(await decode(Buffer.concat([aZst, skippable(100).subarray(0, 50)]), mode), 'COSI_ERR_ZSTD', /truncated/);
    // damage inside the first compressed block: the decoder itself must notice
    const bad = Buffer.from(aZst);
    const h = readFrameHeader(bad);
    assert.ok(h?.kind === 'frame');
    bad.fill(0xff, h.headerSize + 3 + 10, h.headerSize + 3 + 200);
    const o = await decode(bad, mode);
    assert.ok(o.err, 'corruption went unnoticed');
    assert.ok(isCosiError(o.err, 'COSI_ERR_ZSTD'), String(o.err));
  });
}

for (const mode of modes) {
  const backend = label(mode);
  test(`[${backend}] offsets of 96 MiB and more (zstd --long=27) decode exactly`, async () => {
    const { plain, zst } = farMatches();
    const h = readFrameHeader(zst);
    assert.ok(h?.kind === 'frame' && h.windowLog === 27 && h.contentSize === plain.length);
    // The second copy cost next to nothing, so zstd did match it 97+ MiB back.
    assert.ok(zst.length < 1.2 * (1 << 20), `compressed to ${zst.length} bytes`);
    const o = await decodeToHash(zst, mode, 27);
    assert.equal(o.length, plain.length);
    assert.equal(o.sha, sha256(plain));
  });

  test(`[${backend}] output many times the window: history wraps, matches straddle the wrap, long and short`, async () => {
    // A 128 KiB window over 3 MiB: each 100 KiB piece repeats the one before with bytes changed
    // here and there, so most of it is matches 100 KiB back (long runs and short ones between
    // the changes). Level 19 splits blocks below 128 KiB, so block starts drift through the ring
    // and matches straddle its end (with full blocks, history would always end at the ring's end).
    const piece = 100 * 1024;
    const parts = [randomBytes(piece)];
    for (let i = 1; i < 31; i++) {
      const next = Buffer.from(parts[i - 1]!);
      for (let j = i % 7; j < piece; j += 7 + (j % 13)) next[j] = (next[j]! + i) & 255;
      parts.push(next);
    }
    const plain = Buffer.concat(parts);
    const zst = zstd('-19 --zstd=wlog=17', plain);
    const h = readFrameHeader(zst);
    assert.ok(h && h.kind === 'frame' && h.windowSize === 1 << 17, JSON.stringify(h));
    assert.ok(zst.length < plain.length / 2, `compressed to ${zst.length}: the matches are there`);
    const o = await decode(zst, mode, { expectedSize: plain.length, chunk: 10000 });
    assert.equal(o.err, undefined);
    assert.equal(sha256(o.out), sha256(plain));
  });

  test(`[${backend}] an RLE block larger than the frame's block size limit is corrupt data, not a short block`, async () => {
    // 1 KiB window (so blocks are at most 1 KiB), then a last RLE block claiming 10 KiB of 0x42.
    const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00]);
    const bh = (10240 << 3) | (1 << 1) | 1;
    const frame = Buffer.concat([header, Buffer.from([bh & 0xff, (bh >> 8) & 0xff, bh >> 16, 0x42])]);
    const o = await decode(frame, mode);
    assertCode(o, 'COSI_ERR_ZSTD');
    assert.ok(o.out.length === 0 || o.out.length === 10240, `a truncated block passed as output: ${o.out.length} bytes`);
  });

  test(`[${backend}] content checksum is verified`, async () => {
    // stored checksum damaged, in frame 1 and in frame 2
    const o1 = await decode(flipChecksum(aZst), mode);
    assertCode(o1, 'COSI_ERR_ZSTD', mode.backend === 'fzstd' ? /content checksum mismatch in frame 1: stored 0x/ : /checksum/i);
    const o2 = await decode(Buffer.concat([aZst, skippable(8), flipChecksum(bZst)]), mode, { chunk: 5000 });
    assertCode(o2, 'COSI_ERR_ZSTD', mode.backend === 'fzstd' ? /checksum mismatch in frame 2:/ : /checksum/i);
    // Damage no decoder check can see: a byte inside a raw (stored) block.
    // Only the checksum tells, and it must fail the stream, not end it.
    const rnd = randomBytes(300 * 1024);
    const raw = zstd('-1', rnd);
    const damaged = Buffer.from(raw);
    damaged[100 * 1024]! ^= 0x80;
    const o3 = await decode(damaged, mode);
    assertCode(o3, 'COSI_ERR_ZSTD', /checksum/i);
    // and the undamaged one, and a frame without a checksum, decode fine
    assert.equal(sha256((await decode(raw, mode)).out), sha256(rnd));
    const unchecked = zstd('-3 --no-check', realB);
    assert.equal(((unchecked[4]! >> 2) & 1), 0);
    const o4 = await decode(unchecked, mode);
    assert.equal(o4.err, undefined);
    assert.equal(sha256(o4.out), sha256(realB));
  });
}

for (const mode of modes.filter((m) => m.engine === 'worker')) {
  const backend = label(mode);

  test(`[${backend}] lends its ring: every chunk is a view of one shared buffer, and a slow consumer gets every byte`, async () => {
    const views = new Set<ArrayBufferLike>();
    const h = createHash('sha256');
    const sink = createZstdSink({
      maxWindowLog: 27,
      backend: mode.backend,
      expectedSize: realA.length,
      onData: async (b) => {
        views.add(b.buffer);
        h.update(b);
        await sleep(1);
      },
    });
    sink.end(aZst);
    await once(sink, 'finish');
    assert.equal(h.digest('hex'), sha256(realA));
    assert.equal(views.size, 1, 'decoded chunks came from more than one buffer');
    assert.ok([...views][0] instanceof SharedArrayBuffer);
  });

  test(`[${backend}] input trickling in small writes (each block spread over many ring slots)`, async () => {
    // The worker idles between writes, so every write is shipped as its own slot; a block
    // then spans dozens of slots, each reused long before the block is whole.
    const parts: Buffer[] = [];
    const sink = createZstdSink({ maxWindowLog: 27, backend: mode.backend, onData: (b) => void parts.push(Buffer.from(b)) });
    const input = Buffer.concat([aZst, skippable(5), bZst]);
    for (let i = 0; i < input.length; i += 8000) {
      if (!sink.write(input.subarray(i, i + 8000))) await once(sink, 'drain');
      await sleep(1);
    }
    sink.end();
    await once(sink, 'finish');
    assert.equal(sha256(Buffer.concat(parts)), sha256(Buffer.concat([realA, realB])));
  });

  test(`[${backend}] a hand-made frame (RLE and raw blocks) whose first pieces arrive a few bytes at a time`, async () => {
    // Hand-made frame, no checksum: 6-byte header (1 MiB window), an RLE block of 1000 x 0x41,
    // then a raw last block. The header and the RLE block share a slot with the next byte; three
    // more single bytes come alone while the worker idles; the rest lands in the first slot
    // again, over the RLE block, before fzstd (still under 18 bytes) has read it.
    const raw = Buffer.from('the quick brown fox jumps over the lazy dog');
    const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50]);
    const rle = Buffer.from([((1000 << 3) | 2) & 0xff, ((1000 << 3) | 2) >> 8, 0, 0x41]);
    const last = (raw.length << 3) | 1;
    const frame = Buffer.concat([header, rle, Buffer.from([last & 0xff, (last >> 8) & 0xff, last >> 16]), raw]);
    const want = Buffer.concat([Buffer.alloc(1000, 0x41), raw]);
    const parts: Buffer[] = [];
    const sink = createZstdSink({ maxWindowLog: 27, backend: mode.backend, onData: (b) => void parts.push(Buffer.from(b)) });
    const first = header.length + rle.length + 1;
    sink.write(frame.subarray(0, first));
    for (let i = first; i < first + 3; i++) {
      await sleep(5);
      sink.write(frame.subarray(i, i + 1));
    }
    await sleep(5);
    sink.end(frame.subarray(first + 3));
    await once(sink, 'finish');
    assert.deepEqual(Buffer.concat(parts), want);
  });

  test(`[${backend}] a stalled consumer stops the worker within its rings`, async () => {
    const rnd = randomBytes(32 << 20);
    const stored = zstd('-1', rnd); // incompressible: about as many bytes in as out
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h = createHash('sha256');
    const sink = createZstdSink({
      maxWindowLog: 27,
      backend: mode.backend,
      onData: async (b) => {
        await gate;
        h.update(b);
      },
    });
    let accepted = 0;
    const writing = (async () => {
      for (let i = 0; i < stored.length; i += 65536) {
        const piece = stored.subarray(i, i + 65536);
        await new Promise<void>((resolve, reject) => sink.write(piece, (err) => (err ? reject(err) : resolve())));
        accepted += piece.length;
      }
      sink.end();
    })();
    await sleep(500);
    // 8 MiB of output ring, 1 MiB of input ring, and what is in flight between them.
    assert.ok(accepted < 20 << 20, `accepted ${accepted} of ${stored.length} bytes while nothing was consumed`);
    release();
    await writing;
    await once(sink, 'finish');
    assert.equal(h.digest('hex'), sha256(rnd));
  });

  test(`[${backend}] windows are given back: frames of one session share one, a finished session frees it`, async () => {
    // 40 MiB whose matches reach 32 MiB back: each frame needs (and touches) a 32 MiB window.
    const piece = randomBytes(1 << 20);
    const plain = Buffer.concat(Array.from({ length: 40 }, (_, i) => (i % 2 ? piece : Buffer.from(piece).reverse())));
    const frame = zstd('-1 --long=25', plain);
    const h = readFrameHeader(frame);
    assert.ok(h?.kind === 'frame' && h.windowLog === 25);
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    for (let session = 0; session < 3; session++) {
      let n = 0;
      const sink = createZstdSink({ maxWindowLog: 27, backend: mode.backend, onData: (b) => void (n += b.length) });
      sink.end(Buffer.concat([frame, frame, frame]));
      await once(sink, 'finish');
      assert.equal(n, 3 * plain.length);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    // Leaking, 9 windows would be alive (288 MiB); shared and freed, one or two at a time.
    const grown = (peak - rss0) / 2 ** 20;
    assert.ok(grown < 160, `RSS grew by ${grown.toFixed(0)} MiB over 3 sessions of 3 frames`);
  });

  test(`[${backend}] a failed decode leaves the pool healthy`, async () => {
    const bad = Buffer.from(aZst);
    bad.fill(0xff, 200, 400);
    for (let round = 0; round < 3; round++) {
      assertCode(await decode(bad, mode), 'COSI_ERR_ZSTD');
      const good = await decode(bZst, mode, { expectedSize: realB.length });
      assert.equal(good.err, undefined);
      assert.equal(sha256(good.out), sha256(realB));
    }
  });
}

for (const mode of modes.filter((m) => m.engine === 'file')) {
  const backend = label(mode);
  const o = { maxWindowLog: 27, backend: mode.backend };

  test(`[${backend}] sparse target: zero blocks are holes, counted, and the reports add up`, async () => {
    // 1 MiB data, 2 MiB zeros, 256 KiB data, 64 KiB + 100 bytes of zeros: the tail block is not aligned.
    const a = realA.subarray(0, 1 << 20);
    const b = realB.subarray(0, 256 << 10);
    const plain = Buffer.concat([a, Buffer.alloc(2 << 20), b, Buffer.alloc((64 << 10) + 100)]);
    const f = fileSink({ ...o, expectedSize: plain.length }, { sparse: true, position: 0 });
    f.sink.end(zstd('-3', plain));
    await once(f.sink, 'finish');
    const st = statSync(f.path);
    const out = await f.result();
    // Holes are not written: the file is only as long as its last data byte; the caller sizes it.
    assert.equal(out.length, a.length + (2 << 20) + b.length);
    assert.ok(out.equals(plain.subarray(0, out.length)));
    const sum = f.reports.reduce((x, r) => ({ bytes: x.bytes + r.bytes, holes: x.holes + r.holes, kernel: x.kernel + r.kernel }), { bytes: 0, holes: 0, kernel: 0 });
    assert.deepEqual(sum, { bytes: plain.length, holes: (2 << 20) + (64 << 10) + 100, kernel: a.length + b.length });
    assert.ok(st.blocks * 512 < a.length + b.length + (256 << 10), `allocated ${st.blocks * 512}`);
  });

  test(`[${backend}] target position and limit: an image larger than its partition is refused before it is written past`, async () => {
    const ok = fileSink({ ...o }, { position: 4096 });
    ok.sink.end(bZst);
    const out = await ok.result();
    assert.ok(out.subarray(4096).equals(realB));
    const f = fileSink({ ...o }, { limit: realB.length - 1 });
    const err = await new Promise((resolve) => {
      f.sink.on('error', resolve);
      f.sink.end(bZst);
    });
    assert.ok(isCosiError(err, 'COSI_ERR_INVALID'), String(err));
    assert.match((err as Error).message, /test image: image is larger than its partition/);
    assert.ok((await f.result()).length <= realB.length - 1);
  });

  test(`[${backend}] a write that fails is COSI_ERR_IO with the offset`, async () => {
    const path = join(dir, `ro-${fileNo++}`);
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    const sink = createZstdSink({ ...o, target: { fd, position: 0, sparse: false, label: 'ro' }, onWritten: () => undefined });
    const err = await new Promise((resolve) => {
      sink.on('error', resolve);
      sink.end(bZst);
    });
    if (!sink.closed) await new Promise((resolve) => sink.once('close', resolve));
    closeSync(fd);
    assert.ok(isCosiError(err, 'COSI_ERR_IO'), String(err));
    assert.match((err as Error).message, /^ro: write failed at byte 0: the file is closed or not open for writing/);
  });

  test(`[${backend}] a destroyed sink closes only after its worker stopped writing, so the fd can be closed and reused`, async () => {
    const plain = Buffer.concat(Array.from({ length: 8 }, () => realA));
    const zst = zstd('-1', plain);
    for (let round = 0; round < 3; round++) {
      const path = join(dir, `big-${fileNo++}`);
      const fd = openSync(path, 'w');
      // Stopped in the middle of its writes: at its first report (2 MiB in), or its second or
      // third. Destroyed right there, the worker is at most its input ring ahead (about 1 MiB
      // compressed), and it stops before its next slot.
      let reports = 0;
      const sink = createZstdSink({
        ...o,
        target: { fd, position: 0, sparse: false, label: 'big' },
        onWritten: () => {
          if (reports++ === round) sink.destroy();
        },
      });
      sink.on('error', () => undefined);
      sink.write(zst);
      await new Promise((resolve) => sink.once('close', resolve));
      assert.ok(reports > 0);
      const written = fstatSync(fd).size;
      assert.ok(written < plain.length, `the decode had finished (${written} bytes) before it was stopped`);
      closeSync(fd);
      // The next file opened gets the same descriptor number; nothing may land in it.
      const other = join(dir, `other-${fileNo++}`);
      const fd2 = openSync(other, 'w');
      assert.equal(fd2, fd);
      await sleep(100);
      assert.equal(fstatSync(fd2).size, 0);
      closeSync(fd2);
      rmSync(path, { force: true });
      rmSync(other, { force: true });
    }
  });
}

test('compressFile round trip, decoded by the zstd program', async () => {
  const id = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const range = { path: join(dir, 'a.bin'), offset: 12345, length: 2 << 20 };
  const want = realA.subarray(range.offset, range.offset + range.length);
  const out = join(dir, 'range.zst');
  const r = await compressFile(range, out, { level: 3, windowLog: 27, skippableId: id });
  const stored = readFileSync(out);
  assert.equal(r.compressedSize, stored.length);
  assert.equal(r.uncompressedSize, range.length);
  assert.equal(r.sha384, createHash('sha384').update(stored).digest('hex'));
  // the 24-byte skippable frame comes first and carries the id
  assert.equal(stored.readUInt32LE(0), 0x184d2a50);
  assert.equal(stored.readUInt32LE(4), 16);
  assert.deepEqual(stored.subarray(8, 24), id);
  const h = readFrameHeader(stored, 24);
  assert.ok(h?.kind === 'frame');
  assert.equal(h.contentSize, range.length);
  assert.equal(r.windowLog, h.windowLog);
  assert.ok(r.windowLog <= 22, `2 MiB input should get a small window, got ${r.windowLog}`);
  // the real zstd program decodes it (and checks the checksum)
  assert.equal(sha256(sh(`zstd -q -d -c ${out}`)), sha256(want));
  for (const mode of modes) {
    const o = await decode(stored, mode, { maxWindowLog: r.windowLog, expectedSize: range.length });
    assert.equal(o.err, undefined);
    assert.equal(sha256(o.out), sha256(want));
  }
  // whole file by path, and an empty range
  const whole = await compressFile(join(dir, 'b.bin'), join(dir, 'b2.zst'), {});
  assert.equal(whole.uncompressedSize, realB.length);
  assert.equal(sha256(sh(`zstd -q -d -c ${join(dir, 'b2.zst')}`)), sha256(realB));
  const empty = await compressFile({ path: join(dir, 'b.bin'), offset: 5, length: 0 }, join(dir, 'e.zst'), {});
  assert.equal(empty.uncompressedSize, 0);
  assert.equal(sh(`zstd -q -d -c ${join(dir, 'e.zst')}`).length, 0);
  for (const mode of modes) {
    const o = await decode(readFileSync(join(dir, 'e.zst')), mode, { expectedSize: 0 });
    assert.equal(o.err, undefined);
    assert.equal(o.out.length, 0);
  }
  await assert.rejects(compressFile(join(dir, 'missing'), join(dir, 'x.zst'), {}), (e) => isCosiError(e, 'COSI_ERR_IO'));
});

test('the zstd program out of file descriptors: a CosiError from the constructor, and the process lives on', { skip: zstdProgram() ? false : 'the zstd program is not installed' }, () => {
  // Under a 40-descriptor limit a few children fit; the next spawn gets no pipes and must not crash the process.
  const script = `
    const { createZstdDecoder } = await import(${JSON.stringify(new URL('../shared/zstd/index.js', import.meta.url).href)});
    const codes = new Set(), made = [];
    for (let i = 0; i < 40; i++) {
      try { const d = createZstdDecoder({ maxWindowLog: 27, backend: 'zstd', expectedSize: 1 << 30 }); d.on('error', () => {}); made.push(d); }
      catch (err) { codes.add(err.code); }
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const d of made) d.destroy();
    console.log(JSON.stringify({ made: made.length, codes: [...codes] }));`;
  const out = execFileSync('bash', ['-c', 'ulimit -n 40 && exec "$0" --input-type=module -e "$1"', process.execPath, script], { encoding: 'utf8' });
  const r = JSON.parse(out) as { made: number; codes: string[] };
  assert.ok(r.made > 0, 'some children started');
  assert.deepEqual(r.codes, ['COSI_ERR_IO']);
});
