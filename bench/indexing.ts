/**
 * Comparison 5: indexing cost must follow the entry count, not the archive
 * size. The shared indexer (checkArchive: marker, metadata, every tar header,
 * the small GPT image) on a 20 GiB sparse archive vs a 20 MiB one built from
 * the same base; then 1,000 small archives, in-process and by cosi-server.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { checkArchive } from '../shared/format/check.js';
import { FileSource } from '../shared/transport/file-source.js';
import { notAvailable, passIf, type Row } from './report.js';
import { startCosiServer } from './servers.js';
import { fmtBytes, summarize, type BenchOptions, type Tools } from './util.js';
import type { IndexWorkload } from './workload.js';

async function indexOnce(path: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const src = new FileSource(path);
  try {
    const { result } = await checkArchive(src);
    if (!result.valid) throw new Error(`${path}: not a valid COSI: ${JSON.stringify(result.errors[0])}`);
  } finally {
    await src.close();
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function indexingComparisons(opts: BenchOptions, tools: Tools, iw: IndexWorkload, log: (s: string) => void): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const rows: Row[] = [];
  const n = opts.quick ? 10 : 30;
  await indexOnce(iw.small);
  await indexOnce(iw.big);
  const small: number[] = [];
  const big: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2) {
      big.push(await indexOnce(iw.big));
      small.push(await indexOnce(iw.small));
    } else {
      small.push(await indexOnce(iw.small));
      big.push(await indexOnce(iw.big));
    }
  }
  const s = summarize(small);
  const b = summarize(big);
  const fmt = (x: ReturnType<typeof summarize>) => `${x.median.toFixed(2)} ms (${x.min.toFixed(2)}-${x.max.toFixed(2)}, n=${x.n})`;
  rows.push({
    id: '5a',
    what: `index (checkArchive) of a ${fmtBytes(iw.bigSize)} sparse archive vs ${fmtBytes(iw.smallSize)} (same real COSI + an extra member, PAX size record for the big one)`,
    measurement: fmt(b),
    baseline: `${fmtBytes(iw.smallSize)}: ${fmt(s)}`,
    ratio: b.median / s.median,
    target: '<= 2.0',
    status: passIf(b.median / s.median <= 2),
    data: { big: b, small: s },
  });
  log(`comparison 5: big ${b.median.toFixed(2)} ms vs small ${s.median.toFixed(2)} ms`);

  const files = (await readdir(iw.manyDir)).filter((f) => f.endsWith('.cosi')).map((f) => join(iw.manyDir, f));
  const t0 = process.hrtime.bigint();
  for (const f of files) await indexOnce(f);
  const seq = Number(process.hrtime.bigint() - t0) / 1e9;
  rows.push({
    id: '5b',
    what: `index ${files.length} small archives (${fmtBytes(iw.tiny.archiveSize)} each), shared indexer in-process, one after another`,
    measurement: `${seq.toFixed(2)} s`,
    baseline: 'limit 2 s',
    ratio: seq / 2,
    target: '< 2 s',
    status: passIf(seq < 2),
  });
  log(`comparison 5: ${files.length} archives in-process ${seq.toFixed(2)} s`);

  const what = `cosi-server start-up on ${files.length} small archives (spawn to 'listening', catalog indexed)`;
  if (!tools.server || !tools.node22) rows.push(notAvailable('5c', what, '< 2 s', !tools.server ? 'dist/server/cli.js missing' : 'Node 22 missing'));
  else {
    const starts: number[] = [];
    let images = 0;
    let failure: string | undefined;
    for (let i = 0; i < (opts.quick ? 1 : 3) && !failure; i++) {
      try {
        const srv = await startCosiServer(tools.node22, iw.manyDir);
        starts.push(srv.startSeconds);
        images = srv.images;
        await srv.stop();
      } catch (err) {
        failure = `cosi-server did not start: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    if (failure) {
      rows.push(notAvailable('5c', what, '< 2 s', failure));
      return { rows, extra: { indexMs: { small, big }, manySeconds: seq } };
    }
    const st = summarize(starts);
    const ok = images === files.length;
    rows.push({
      id: '5c',
      what,
      measurement: `${st.median.toFixed(2)} s (${st.min.toFixed(2)}-${st.max.toFixed(2)}, n=${st.n}), ${images} images listed`,
      baseline: 'limit 2 s',
      ratio: st.median / 2,
      target: '< 2 s',
      status: ok ? passIf(st.median < 2) : 'MISS',
      notes: ok ? undefined : `server listed ${images} of ${files.length} archives at start-up`,
    });
  }
  return { rows, extra: { indexMs: { small, big }, manySeconds: seq } };
}
