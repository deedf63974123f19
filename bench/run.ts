/**
 * npm run bench: builds (or reuses) the workloads, runs the comparisons of
 * issue 5 (and 8, the server's memory under abuse, from issue 12) side by
 * side, and writes bench/results/bench[-quick].{md,json}; with --only, the
 * other comparisons' rows are kept from the previous results.
 *
 *   node dist/bench/run.js [--quick] [--only 1,3] [--rounds N]
 */
import { mkdir, rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { diskComparisons, memoryComparison, partitionComparisons, wireComparison, type FetchContext } from './fetch.js';
import { framedComparisons } from './framed.js';
import { indexingComparisons } from './indexing.js';
import { loadComparisons } from './load.js';
import { markdown, withEarlierRows, writeResults, type Row } from './report.js';
import { soakComparisons } from './soak.js';
import { storeComparisons } from './store.js';
import { findTools, loadNote, MAX_RERUNS, nodeVersion, parseOptions, sh, wants } from './util.js';
import { indexWorkload, lowRatioRecipe, mainRecipe, packedWorkload, sparseRecipe } from './workload.js';

const opts = parseOptions(process.argv.slice(2));
const started = Date.now();
const log = (s: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

const tools = findTools();
log(`node20 ${process.version}, node22 ${tools.node22 ? nodeVersion(tools.node22) : 'missing'}, client ${tools.client}, server ${tools.server}, wrk ${tools.wrk}, /usr/bin/time ${tools.timeV}`);

// Comparison 8 measures the server's own state, which the archive's size does not change: it
// always serves the small workload, and the full one is built only for the comparisons that need it.
const needMain = [1, 2, 3, 4, 5, 6, 7, 9, 10].some((n) => wants(opts, n));
// The low-ratio workload (about 4:1) beside the main one (5.7:1) for every row that fetches or serves
// an archive (1-4, 7); with --low-only, instead of it. 5 (indexing), 6a/b (the sparse workload) and 8
// (the server's own state) do not depend on the archive's compression ratio.
const LOW_ROWS = [1, 2, 3, 4, 7, 9];
const low = opts.lowOnly || LOW_ROWS.some((n) => wants(opts, n)) ? await packedWorkload(opts.cacheDir, lowRatioRecipe(opts.quick), log) : undefined;
const main = opts.lowOnly ? low! : await packedWorkload(opts.cacheDir, mainRecipe(opts.quick || !needMain), log);
const small = wants(opts, 8) && main.name !== mainRecipe(true).name ? await packedWorkload(opts.cacheDir, mainRecipe(true), log) : main;
const needSparse = wants(opts, 3) || wants(opts, 6);
const sparse = needSparse ? await packedWorkload(opts.cacheDir, sparseRecipe(opts.quick), log) : undefined;
const outDir = join(opts.cacheDir, `out-${process.pid}`);
await mkdir(outDir, { recursive: true });

const rows: Row[] = [];
const extra: Record<string, unknown> = {};
const ctx: FetchContext = { opts, tools, main, sparse, log, outDir };
const load0 = loadavg()[0]!;

/** The root's compression ratio (decoded over stored). */
function rootRatio(w: typeof main): number {
  const r = w.regions.find((x) => x.mountPoint === '/')!;
  return r.uncompressedSize / r.compressedSize;
}

/** A row measured on the low-ratio workload: its id ends in -low and it says so. */
function lowRow(x: Row): Row {
  return { ...x, id: `${x.id}-low`, what: `${x.what}, low-ratio workload (root ${rootRatio(low!).toFixed(1)}:1)` };
}

/**
 * A comparison's rows, each noting the 1-minute load average before and after it ran (comparison 4
 * notes its own, per row). The machine is shared: a comparison during which the load moved by more
 * than 1 is run again, at most MAX_RERUNS times; the last attempt is kept and every attempt's load noted.
 */
async function withLoad<T extends { rows: Row[] }>(f: () => Promise<T>): Promise<T> {
  const loads: Array<[number, number]> = [];
  let r: T;
  for (let attempt = 0; ; attempt++) {
    const before = loadavg()[0]!;
    r = await f();
    const after = loadavg()[0]!;
    loads.push([before, after]);
    if (Math.abs(after - before) <= 1 || attempt >= MAX_RERUNS) break;
    log(`1-min load moved ${before.toFixed(2)} -> ${after.toFixed(2)}: running the comparison again`);
  }
  const note = loadNote(loads);
  for (const row of r.rows) row.notes = row.notes ? `${note}; ${row.notes}` : note;
  return r;
}
try {
  if (wants(opts, 1) || wants(opts, 2)) {
    const r = await withLoad(() => partitionComparisons(ctx));
    rows.push(...r.rows.filter((x) => wants(opts, Number(x.id[0]))));
    extra.partition = r.extra;
    if (!opts.lowOnly) {
      const l = await withLoad(() => partitionComparisons({ ...ctx, main: low! }));
      rows.push(...l.rows.filter((x) => wants(opts, Number(x.id[0]))).map(lowRow));
      extra.partitionLowRatio = l.extra;
    }
  }
  if (wants(opts, 3)) {
    const r = await withLoad(() => diskComparisons(ctx));
    rows.push(...r.rows);
    extra.disk = r.extra;
    if (!opts.lowOnly) {
      // The whole disk of the low-ratio workload (3a, 3b); the sparse disk (3c, 3d) is the same one.
      const l = await withLoad(() => diskComparisons({ ...ctx, main: low!, sparse: undefined }));
      rows.push(...l.rows.map(lowRow));
      extra.diskLowRatio = l.extra;
    }
  }
  if (wants(opts, 4) || wants(opts, 6)) {
    const r = await loadComparisons(opts, tools, main, outDir, log);
    rows.push(...r.rows.filter((x) => wants(opts, Number(x.id[0]))));
    extra.load = r.extra;
    if (!opts.lowOnly && wants(opts, 4)) {
      const l = await loadComparisons(opts, tools, low!, outDir, log);
      rows.push(...l.rows.filter((x) => x.id[0] === '4').map(lowRow));
      extra.loadLowRatio = l.extra;
    }
  }
  if (wants(opts, 5)) {
    const iw = await indexWorkload(opts.cacheDir, log);
    const r = await indexingComparisons(opts, tools, iw, log);
    rows.push(...r.rows);
    extra.indexing = r.extra;
  }
  if (wants(opts, 6)) {
    const r = await withLoad(() => memoryComparison(ctx));
    rows.push(...r.rows);
    extra.memory = r.extra;
  }
  if (wants(opts, 7)) {
    const r = await withLoad(() => wireComparison(ctx));
    rows.push(...r.rows);
    extra.wire = r.extra;
    if (!opts.lowOnly) rows.push(...(await withLoad(() => wireComparison({ ...ctx, main: low! }))).rows.map(lowRow));
  }
  if (wants(opts, 9)) {
    const r = await withLoad(() => framedComparisons(ctx));
    rows.push(...r.rows);
    extra.framed = r.extra;
    if (!opts.lowOnly) {
      const l = await withLoad(() => framedComparisons({ ...ctx, main: low! }));
      rows.push(...l.rows.map(lowRow));
      extra.framedLowRatio = l.extra;
    }
  }
  if (wants(opts, 10)) {
    const iw = await indexWorkload(opts.cacheDir, log);
    const r = await withLoad(() => storeComparisons(opts, tools, iw, main, outDir, log));
    rows.push(...r.rows);
    extra.store = r.extra;
  }
  if (wants(opts, 8)) {
    const r = await soakComparisons(opts, tools.node22 ?? tools.node20, small, log);
    rows.push(...r.rows);
    extra.soak = r.extra;
  }
} finally {
  await rm(outDir, { recursive: true, force: true });
}

if (opts.lowOnly) rows.splice(0, rows.length, ...rows.map(lowRow));
rows.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const header: Record<string, string> = {
  date: new Date().toISOString(),
  machine: `${cpus().length} x ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${(await sh('uname -sr')).trim()}; shared with other engineers' test runs (1-min load average at start ${load0.toFixed(2)}, at end ${loadavg()[0]!.toFixed(2)})`,
  node: `${process.version} (fzstd); ${tools.node22 ? nodeVersion(tools.node22) : 'Node 22 missing'} (node:zlib zstd)`,
  mode: `${opts.quick ? 'quick' : 'full'}, ${opts.rounds} alternating rounds${opts.only.size ? `, only ${[...opts.only].join(',')}` : ''}`,
  workload: `${opts.lowOnly ? '' : `${main.name}: ${(main.diskSize / 2 ** 20).toFixed(0)} MiB disk (ESP, ext4 root of real /usr/lib files plus free space, mostly-empty /srv), archive ${(main.archiveSize / 2 ** 20).toFixed(0)} MiB, root ${rootRatio(main).toFixed(1)}:1, level 9, window log ${main.maxWindowLog}; `}${low ? `${low.name} (rows -low): ${(low.diskSize / 2 ** 20).toFixed(0)} MiB disk, ext4 root of the machine's shared libraries only, archive ${(low.archiveSize / 2 ** 20).toFixed(0)} MiB, root ${rootRatio(low).toFixed(1)}:1, skippable frames, level 9, window log ${low.maxWindowLog}` : ''}${sparse ? `; ${sparse.name}: ${(sparse.diskSize / 2 ** 30).toFixed(1)} GiB logical disk (${(sparse.regions.find((r) => r.mountPoint === '/')!.uncompressedSize / 2 ** 30).toFixed(1)} GiB ext4 root with real files, the rest a zero partition), archive ${(sparse.archiveSize / 2 ** 20).toFixed(1)} MiB` : ''}`,
  'bench time': `${((Date.now() - started) / 1000).toFixed(0)} s`,
};
const base = opts.quick ? 'bench-quick' : 'bench';
const merged = await withEarlierRows(opts.resultsDir, base, opts.only, rows, header, extra);
const files = await writeResults(opts.resultsDir, base, merged.rows, merged.header, merged.extra);
process.stdout.write(markdown(merged.rows, merged.header));
log(`wrote ${files.md} and ${files.json}`);
