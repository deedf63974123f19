/** The job pool that keeps several large-window decodes from running at once. */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { decodeWindow, pool } from '../client/image.js';

describe('pool with a memory budget', () => {
  test('never runs more than `jobs` at once, nor more weight than the budget; a light item slips in beside a heavy one', async () => {
    const MiB = 1 << 20;
    const items = [128, 128, 8, 128, 4].map((w, i) => ({ i, w: w * MiB }));
    let running = 0;
    let weight = 0;
    let peakRunning = 0;
    let peakWeight = 0;
    const order: number[] = [];
    const out = await pool(
      items,
      2,
      async (it) => {
        running++;
        weight += it.w;
        peakRunning = Math.max(peakRunning, running);
        peakWeight = Math.max(peakWeight, weight);
        order.push(it.i);
        await sleep(20);
        running--;
        weight -= it.w;
        return it.i * 10;
      },
      { weight: (it) => it.w, budget: 128 * MiB + 64 * MiB },
    );
    assert.deepEqual(out, [0, 10, 20, 30, 40], 'results keep the input order');
    assert.equal(peakRunning, 2);
    assert.ok(peakWeight <= 192 * MiB, `peak weight ${peakWeight / MiB} MiB`);
    assert.deepEqual(order.slice(0, 2), [0, 2], 'the 8 MiB item starts beside the first 128 MiB one, the second 128 MiB waits');
  });

  test('one item heavier than the whole budget still runs (alone)', async () => {
    const out = await pool([{ w: 10 }], 2, async () => 'ran', { weight: (x) => x.w, budget: 1 });
    assert.deepEqual(out, ['ran']);
  });

  test('the first failure stops new starts and is thrown', async () => {
    const started: number[] = [];
    await assert.rejects(
      pool([0, 1, 2, 3], 1, async (i) => {
        started.push(i);
        if (i === 1) throw new Error('boom');
        return i;
      }),
      /boom/,
    );
    assert.deepEqual(started, [0, 1]);
  });

  test('an image decodes with a window of at most its own size', () => {
    const img = (n: number) => ({ path: 'images/x', compressedSize: 1, uncompressedSize: n, sha384: 'a'.repeat(96) });
    assert.equal(decodeWindow(img(1 << 20), 27), 1 << 20);
    assert.equal(decodeWindow(img(1 << 30), 27), 1 << 27);
  });
});
