import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isCosiError } from '../shared/errors.js';
import { forEachRun, HOLE_BLOCK, TargetWriter } from '../shared/transport/positional-write.js';

const dir = mkdtempSync(join(tmpdir(), 'cosi-pwrite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function runsOf(chunk: Buffer, pos: number, sparse: boolean): { runs: Array<[number, number]>; holes: number } {
  const runs: Array<[number, number]> = [];
  const holes = forEachRun(chunk, pos, sparse, (s, e) => void runs.push([s, e]));
  return { runs, holes };
}

test('forEachRun splits at absolute 64 KiB boundaries and joins neighbouring data blocks', () => {
  const B = HOLE_BLOCK;
  // Starting 100 bytes before a boundary: the first "block" is those 100 bytes.
  const c = Buffer.alloc(100 + 3 * B + 50);
  c[5] = 1; // first partial block: data
  // block 1 (100 .. 100+B): zeros
  c[100 + B + 7] = 1; // block 2: data
  c[100 + 2 * B + 9] = 1; // block 3: data, joined with block 2
  // tail (50 bytes): zeros
  const { runs, holes } = runsOf(c, B - 100, true);
  assert.deepEqual(runs, [[0, 100], [100 + B, 100 + 3 * B]]);
  assert.equal(holes, B + 50);
  // Not sparse: one run, no holes, whatever the content.
  assert.deepEqual(runsOf(c, B - 100, false), { runs: [[0, c.length]], holes: 0 });
  assert.deepEqual(runsOf(Buffer.alloc(0), 0, false), { runs: [], holes: 0 });
  assert.deepEqual(runsOf(Buffer.alloc(3 * B), 0, true), { runs: [], holes: 3 * B });
});

test('TargetWriter writes at its position, leaves holes, counts, and refuses to pass its limit', () => {
  const path = join(dir, 'w');
  const fd = openSync(path, 'w+');
  try {
    const w = new TargetWriter({ fd, position: 1000, sparse: true, limit: 3 * HOLE_BLOCK, label: 'p1' });
    const a = Buffer.alloc(HOLE_BLOCK, 7);
    w.put(a);
    w.put(Buffer.alloc(HOLE_BLOCK));
    assert.deepEqual(w.take(), { bytes: 2 * HOLE_BLOCK, holes: HOLE_BLOCK, kernel: HOLE_BLOCK });
    assert.deepEqual(w.take(), { bytes: 0, holes: 0, kernel: 0 });
    assert.throws(() => w.put(Buffer.alloc(HOLE_BLOCK + 1, 1)), (e: unknown) => isCosiError(e, 'COSI_ERR_INVALID') && /p1: image is larger than its partition \(196608 bytes\)/.test((e as Error).message));
    const out = readFileSync(path);
    assert.equal(out.length, 1000 + HOLE_BLOCK);
    assert.ok(out.subarray(1000).equals(a));
    assert.ok(statSync(path).size === 1000 + HOLE_BLOCK);
  } finally {
    closeSync(fd);
  }
  const ro = openSync(path, 'r');
  try {
    const w = new TargetWriter({ fd: ro, position: 5, sparse: false, label: 'p2' });
    assert.throws(() => w.put(Buffer.alloc(10, 1)), (e: unknown) => isCosiError(e, 'COSI_ERR_IO') && /^p2: write failed at byte 5: the file is closed or not open for writing$/.test((e as Error).message));
  } finally {
    closeSync(ro);
  }
});
