/**
 * FramedSink's lanes when the input stops: every frame whose compressed bytes
 * all arrived is decoded, written and reported done while the transfer is
 * stalled (a --resume journal records only frames reported done). Frames
 * whose decoded size is not a multiple of 4 KiB are the hard case for the
 * zstd program, whose stdio kept a frame's last bytes until more output came.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FramedSink } from '../shared/zstd/lanes.js';
import { zstdProgram } from '../shared/zstd/backends.js';
import { canDecodeInWorker, hasNodeZstd } from '../shared/zstd/index.js';
import type { SeekFrame } from '../shared/zstd/seek-table.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-framed-lanes-'));
after(() => rm(work, { recursive: true, force: true }));

/** Text-like bytes (compressible, not trivially), `n` of them. */
function content(n: number): Buffer {
  return Buffer.from(randomBytes(Math.ceil((n * 3) / 4)).toString('base64').slice(0, n));
}

/** Independent zstd frames, each declaring its size, and their seek-table placement. */
function framesOf(sizes: number[]): { frames: SeekFrame[]; data: Buffer[]; plain: Buffer } {
  const data: Buffer[] = [];
  const frames: SeekFrame[] = [];
  const plains: Buffer[] = [];
  let c = 0;
  let d = 0;
  for (const [index, n] of sizes.entries()) {
    const plain = content(n);
    const z = spawnSync(zstdProgram()!, ['-q', '-c', '-3', `--stream-size=${n}`], { input: plain, maxBuffer: 64 << 20 });
    assert.equal(z.status, 0, String(z.stderr));
    data.push(z.stdout);
    plains.push(plain);
    frames.push({ index, compressedSize: z.stdout.length, decompressedSize: n, compressedOffset: c, decompressedOffset: d });
    c += z.stdout.length;
    d += n;
  }
  return { frames, data, plain: Buffer.concat(plains) };
}

const kinds: Array<[string, string | undefined, string | false]> = [
  ['zstd program lanes', 'zstd', zstdProgram() ? false : 'the zstd program is not installed'],
  ['node:zlib worker lanes', 'node', hasNodeZstd() && canDecodeInWorker('node') ? false : 'this runtime has no zstd in node:zlib'],
];

for (const [name, decoder, skip] of kinds) {
  test(`${name}: a stalled transfer still finishes every frame it received whole (frames of 1,000,001 bytes)`, { skip }, async () => {
    const before = process.env.COSI_ZSTD_DECODER;
    process.env.COSI_ZSTD_DECODER = decoder;
    const sizes = [1_000_001, 1_000_001, 1_000_001, 999_997];
    const { frames, data, plain } = framesOf(sizes);
    const out = join(work, `${decoder}.img`);
    const fh = await open(out, 'w+');
    const done: number[] = [];
    let sink: FramedSink | undefined;
    try {
      sink = new FramedSink({
        frames,
        label: 'root',
        maxWindowLog: 27,
        threads: 2,
        target: { fd: fh.fd, position: 0, sparse: false, label: 'root' },
        onWritten: () => {},
        onFrameDone: (i) => done.push(i),
      });
      // Frames 0 and 1 whole (one per lane), then half of frame 2; then nothing more arrives.
      const s = sink;
      const write = (b: Buffer) => new Promise<void>((resolve, reject) => s.write(b, (err) => (err ? reject(err) : resolve())));
      await write(data[0]!);
      await write(data[1]!);
      await write(data[2]!.subarray(0, data[2]!.length >> 1));
      for (let i = 0; i < 100 && done.length < 2; i++) await sleep(50);
      assert.deepEqual([...done].sort(), [0, 1], 'both frames received whole are reported done while the input is stalled');
      const written = Buffer.alloc(sizes[0]! + sizes[1]!);
      await fh.read(written, 0, written.length, 0);
      assert.equal(createHash('sha256').update(written).digest('hex'), createHash('sha256').update(plain.subarray(0, written.length)).digest('hex'), 'their bytes are written, whole');
      // The rest arrives: the sink finishes and the file is the image.
      await write(data[2]!.subarray(data[2]!.length >> 1));
      await write(data[3]!);
      await new Promise<void>((resolve, reject) => s.end((err?: Error | null) => (err ? reject(err) : resolve())));
      assert.deepEqual([...done].sort(), [0, 1, 2, 3]);
      await fh.close();
      assert.ok((await readFile(out)).equals(plain), 'the output is the frames decoded, in place');
    } finally {
      sink?.destroy();
      await fh.close().catch(() => undefined);
      if (before === undefined) delete process.env.COSI_ZSTD_DECODER;
      else process.env.COSI_ZSTD_DECODER = before;
    }
  });
}
