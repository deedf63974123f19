/**
 * Client comparisons: one partition (1, 2), the whole disk (3), peak memory
 * (6) and requests/bytes on the wire (7), each against the native pipeline
 * (curl | zstd) on the same loopback server, rounds alternating so noise
 * from the shared machine lands on both sides.
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { cpuProfile, fmtProfile, type ProfileSummary } from './profile.js';
import { notAvailable, passIf, type Row } from './report.js';
import { startCosiServer, startDeployedNginx, startNginx } from './servers.js';
import { CLIENT_CLI, fmtBytes, fmtSeconds, sh, summarize, timed, type BenchOptions, type Tools } from './util.js';
import { nonZeroBytes, type RegionInfo, type Workload } from './workload.js';

const MiB = 1024 * 1024;

function rootRegion(w: Workload): RegionInfo {
  const r = w.regions.find((x) => x.mountPoint === '/');
  if (!r) throw new Error(`${w.name}: no root partition`);
  return r;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The native one-partition pipeline, hashing the stored bytes on the side. */
function nativePartition(url: string, r: RegionInfo, out: string, hashFile: string): string {
  return `set -e -o pipefail; curl -sf -r ${r.start}-${r.end} ${q(url)} | tee >(sha384sum > ${q(hashFile)}) | zstd -d -q -f -o ${q(out)}; wait`;
}

/** The native whole-disk pipeline: each region decoded and written at its offset, sparse. */
function nativeDisk(url: string, w: Workload, out: string): string {
  const parts = w.regions.map(
    (r) =>
      `curl -sf -r ${r.start}-${r.end} ${q(url)} | zstd -d -q -c | dd of=${q(out)} bs=1M iflag=fullblock seek=${r.diskOffset} oflag=seek_bytes conv=notrunc,sparse status=none`,
  );
  return `set -e -o pipefail; rm -f ${q(out)}; ${parts.join('; ')}; truncate -s ${w.diskSize} ${q(out)}`;
}

function clientArgs(url: string, out: string, mode: 'partition' | 'disk', json = false): string[] {
  const sel = mode === 'partition' ? ['--partition', 'root'] : ['--disk'];
  return [CLIENT_CLI, ...sel, '-o', out, '--progress', 'none', '-q', ...(json ? ['--json'] : []), url];
}

async function allocated(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}

async function same(a: string, b: string): Promise<boolean> {
  try {
    await sh(`cmp -s ${q(a)} ${q(b)}`);
    return true;
  } catch {
    return false;
  }
}

interface Contender {
  name: string;
  run(out: string): Promise<number>;
  /** Run in the first N rounds only (for a contender too slow to repeat). */
  maxRounds?: number;
}

/** Runs every contender once per round, rotating the order each round; returns seconds per contender. */
async function alternate(cs: Contender[], rounds: number, outDir: string, log: (s: string) => void, check?: (round: number, outs: Map<string, string>) => Promise<void>): Promise<Map<string, number[]>> {
  const times = new Map(cs.map((c) => [c.name, [] as number[]]));
  for (let round = 0; round < rounds; round++) {
    const order = cs.map((_, i) => cs[(i + round) % cs.length]!).filter((c) => c.maxRounds === undefined || round < c.maxRounds);
    const outs = new Map<string, string>();
    for (const c of order) {
      const out = join(outDir, `${c.name.replace(/\W+/g, '_')}.out`);
      await rm(out, { force: true });
      const s = await c.run(out);
      times.get(c.name)!.push(s);
      outs.set(c.name, out);
      log(`  round ${round + 1}/${rounds} ${c.name}: ${s.toFixed(2)} s`);
      // Outputs are deleted as soon as they are checked, so dirty pages do not pile up.
      if (!check || round !== 0) await rm(out, { force: true });
    }
    if (check && round === 0) {
      await check(round, outs);
      for (const o of outs.values()) await rm(o, { force: true });
    }
  }
  return times;
}

export interface FetchContext {
  opts: BenchOptions;
  tools: Tools;
  main: Workload;
  sparse?: Workload;
  log: (s: string) => void;
  outDir: string;
}

/** Comparisons 1 and 2 (they share rounds, so the server row sees the same noise). */
export async function partitionComparisons(ctx: FetchContext): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const { tools, main, log, opts } = ctx;
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};
  const root = rootRegion(main);
  const nginx = await startDeployedNginx(main.dir);
  const server = tools.server && tools.node22 ? await startCosiServer(tools.node22, main.dir).catch((e: Error) => (log(`cosi-server failed to start: ${e.message}`), undefined)) : undefined;
  try {
    const url = `${nginx.url}/${main.file}`;
    const surl = server ? `${server.url}/cosi/${main.file}` : undefined;
    const hashFile = join(ctx.outDir, 'native.sha384');
    const cs: Contender[] = [{ name: 'native', run: async (out) => (await timed('bash', ['-c', nativePartition(url, root, out, hashFile)])).seconds }];
    if (tools.client && tools.node22) cs.push({ name: 'ours-node22-nginx', run: async (out) => (await timed(tools.node22!, clientArgs(url, out, 'partition'))).seconds });
    // fzstd decodes several times slower than node:zlib: one round keeps the bench within its time budget.
    const fzstdEnv = { ...process.env, COSI_ZSTD_DECODER: 'fzstd' };
    if (tools.client) cs.push({ name: 'ours-node20-fzstd-nginx', maxRounds: 1, run: async (out) => (await timed(tools.node20, clientArgs(url, out, 'partition'), { env: fzstdEnv })).seconds });
    // Node 20's default where the zstd program is installed (it is: the native baseline runs it).
    const programEnv = { ...process.env, COSI_ZSTD_DECODER: 'zstd' };
    if (tools.client) cs.push({ name: 'ours-node20-zstd-nginx', run: async (out) => (await timed(tools.node20, clientArgs(url, out, 'partition'), { env: programEnv })).seconds });
    if (tools.client && tools.node22 && surl) cs.push({ name: 'ours-node22-server', run: async (out) => (await timed(tools.node22!, clientArgs(surl, out, 'partition'))).seconds });
    log(`comparison 1/2: root partition, ${fmtBytes(root.compressedSize)} stored, ${fmtBytes(root.uncompressedSize)} decoded`);
    const verified: Record<string, boolean> = {};
    const times = await alternate(cs, opts.rounds, ctx.outDir, log, async (_r, outs) => {
      const nat = outs.get('native')!;
      const h = (await readFile(hashFile, 'utf8')).split(' ')[0];
      verified['native-hash-read'] = !!h;
      for (const [name, out] of outs) if (name !== 'native') verified[name] = await same(nat, out);
      const st = await stat(nat);
      verified['native-size-ok'] = st.size === root.uncompressedSize;
    });
    extra.partitionTimes = Object.fromEntries(times);
    extra.outputsIdentical = verified;
    const nat = summarize(times.get('native')!);
    const base = `native ${fmtSeconds(nat)}`;
    const what = `root partition (${fmtBytes(root.compressedSize)} -> ${fmtBytes(root.uncompressedSize)}) from nginx`;
    const n22 = times.get('ours-node22-nginx');
    if (!tools.client) rows.push(notAvailable('1a', what, '<= 1.3', 'dist/client/cli.js missing'));
    else if (!n22) rows.push(notAvailable('1a', what, '<= 1.3', 'Node 22 not available via npx'));
    else {
      const s = summarize(n22);
      const ratio = s.median / nat.median;
      const mismatch = verified['ours-node22-nginx'] === false ? ' OUTPUT DIFFERS from native' : '';
      rows.push({ id: '1a', what: `${what}, node:zlib (Node 22)`, measurement: fmtSeconds(s), baseline: base, ratio, target: '<= 1.3', status: mismatch ? 'MISS' : passIf(ratio <= 1.3), notes: mismatch || undefined, data: { ours: s, native: nat } });
    }
    const f20 = times.get('ours-node20-fzstd-nginx');
    if (f20) {
      const s = summarize(f20);
      rows.push({ id: '1b', what: `${what}, fzstd (Node 20)`, measurement: fmtSeconds(s), baseline: base, ratio: s.median / nat.median, target: 'report (as fast as it goes)', status: verified['ours-node20-fzstd-nginx'] === false ? 'MISS' : 'INFO', notes: verified['ours-node20-fzstd-nginx'] === false ? 'OUTPUT DIFFERS from zstd -d (fzstd decodes this image wrongly; exit status 0)' : undefined, data: { ours: s, native: nat } });
    } else rows.push(notAvailable('1b', `${what}, fzstd (Node 20)`, 'report', 'dist/client/cli.js missing'));
    const p20 = times.get('ours-node20-zstd-nginx');
    if (p20) {
      const s = summarize(p20);
      const ratio = s.median / nat.median;
      const mismatch = verified['ours-node20-zstd-nginx'] === false ? ' OUTPUT DIFFERS from native' : '';
      rows.push({ id: '1c', what: `${what}, zstd program (Node 20)`, measurement: fmtSeconds(s), baseline: base, ratio, target: '<= 1.5', status: mismatch ? 'MISS' : passIf(ratio <= 1.5), notes: mismatch || undefined, data: { ours: s, native: nat } });
    } else rows.push(notAvailable('1c', `${what}, zstd program (Node 20)`, '<= 1.5', 'dist/client/cli.js missing'));
    const sv = times.get('ours-node22-server');
    if (sv && n22) {
      const s = summarize(sv);
      const ref = summarize(n22);
      const ratio = s.median / ref.median;
      rows.push({ id: '2', what: 'root partition from cosi-server (/cosi/...) vs from nginx, both cosi-fetch on Node 22', measurement: fmtSeconds(s), baseline: `from nginx ${fmtSeconds(ref)}`, ratio, target: '<= 1.10', status: verified['ours-node22-server'] === false ? 'MISS' : passIf(ratio <= 1.1), data: { server: s, nginx: ref, vsNative: s.median / nat.median } });
    } else rows.push(notAvailable('2', 'root partition from cosi-server vs nginx', '<= 1.10', !tools.server ? 'dist/server/cli.js missing' : !server ? 'cosi-server did not start' : 'client or Node 22 missing'));

    // Profiles of the client where a target is missed (and always for fzstd, whose target is "as fast as it can go").
    const profiles: Record<string, ProfileSummary> = {};
    const miss1a = rows.find((r) => r.id === '1a')?.status === 'MISS';
    if (tools.client && tools.node22 && miss1a && !opts.quick) {
      const out = join(ctx.outDir, 'prof.out');
      profiles['node22'] = await cpuProfile(tools.node22, clientArgs(url, out, 'partition'));
      await rm(out, { force: true });
      rows.find((r) => r.id === '1a')!.notes = `profile: ${fmtProfile(profiles['node22'])}`;
    }
    if (tools.client && f20 && !opts.quick) {
      const out = join(ctx.outDir, 'prof.out');
      profiles['node20-fzstd'] = await cpuProfile(tools.node20, clientArgs(url, out, 'partition'), 12, fzstdEnv);
      await rm(out, { force: true });
      const r = rows.find((x) => x.id === '1b');
      if (r) r.notes = `${r.notes ? r.notes + '; ' : ''}profile: ${fmtProfile(profiles['node20-fzstd'])}`;
    }
    // Node 20 with the zstd program: the main thread feeds the child and writes what it decodes.
    const r1c = rows.find((x) => x.id === '1c');
    if (tools.client && r1c?.status === 'MISS' && !opts.quick) {
      const out = join(ctx.outDir, 'prof.out');
      profiles['node20-zstd'] = await cpuProfile(tools.node20, clientArgs(url, out, 'partition'), 12, programEnv);
      await rm(out, { force: true });
      r1c.notes = `${r1c.notes ? r1c.notes + '; ' : ''}profile: ${fmtProfile(profiles['node20-zstd'])}`;
    }
    extra.profiles = profiles;
  } finally {
    await server?.stop();
    await nginx.stop();
  }
  return { rows, extra };
}

/** Comparison 3: the whole disk, timed against the native per-region pipeline; then sparseness. */
export async function diskComparisons(ctx: FetchContext): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const { tools, main, log, opts } = ctx;
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};
  if (!tools.client || !tools.node22) {
    rows.push(notAvailable('3a', 'whole disk (--disk)', '<= 1.3', !tools.client ? 'dist/client/cli.js missing' : 'Node 22 missing'));
    return { rows, extra };
  }
  const nginx = await startDeployedNginx(main.dir);
  try {
    const url = `${nginx.url}/${main.file}`;
    let alloc: { ours: number; native: number } | undefined;
    let identical: boolean | undefined;
    log(`comparison 3: whole disk ${fmtBytes(main.diskSize)} (${main.regions.length} regions)`);
    const times = await alternate(
      [
        { name: 'native', run: async (out) => (await timed('bash', ['-c', nativeDisk(url, main, out)])).seconds },
        { name: 'ours', run: async (out) => (await timed(tools.node22!, clientArgs(url, out, 'disk'))).seconds },
      ],
      opts.rounds,
      ctx.outDir,
      log,
      async (_r, outs) => {
        alloc = { ours: await allocated(outs.get('ours')!), native: await allocated(outs.get('native')!) };
        // The native pipeline writes no backup GPT; compare everything before it.
        const cut = main.diskSize - 33 * 512;
        identical = (await sh(`cmp -n ${cut} ${q(outs.get('native')!)} ${q(outs.get('ours')!)} >/dev/null && echo same || echo differ`)).trim() === 'same';
      },
    );
    const nat = summarize(times.get('native')!);
    const ours = summarize(times.get('ours')!);
    const ratio = ours.median / nat.median;
    rows.push({
      id: '3a',
      what: `whole disk ${fmtBytes(main.diskSize)} to a file, node:zlib (Node 22), from nginx`,
      measurement: fmtSeconds(ours),
      baseline: `native per-region curl|zstd|dd ${fmtSeconds(nat)}`,
      ratio,
      target: '<= 1.3',
      status: identical === false ? 'MISS' : passIf(ratio <= 1.3),
      notes: identical === false ? 'output differs from the native pipeline before the backup GPT' : undefined,
      data: { ours, native: nat, identicalBeforeBackupGpt: identical },
    });
    if (alloc) {
      const r = alloc.ours / main.nonZeroBytes;
      rows.push({
        id: '3b',
        what: `allocated blocks of the --disk output (${fmtBytes(main.diskSize)} logical)`,
        measurement: fmtBytes(alloc.ours),
        baseline: `non-zero 4 KiB blocks of the source disk ${fmtBytes(main.nonZeroBytes)} (native dd conv=sparse: ${fmtBytes(alloc.native)})`,
        ratio: r,
        target: '<= 1.05',
        status: passIf(r <= 1.05),
        data: alloc,
      });
    }
    if (ctx.sparse) {
      const sp = ctx.sparse;
      const ng2 = await startDeployedNginx(sp.dir);
      try {
        const u2 = `${ng2.url}/${sp.file}`;
        log(`comparison 3c: sparse disk ${fmtBytes(sp.diskSize)} logical`);
        let spAlloc: number | undefined;
        let rss: number | undefined;
        const t2 = await alternate(
          [
            { name: 'native', run: async (out) => (await timed('bash', ['-c', nativeDisk(u2, sp, out)])).seconds },
            {
              name: 'ours',
              run: async (out) => {
                const t = await timed(tools.node22!, clientArgs(u2, out, 'disk'), { memory: tools.timeV });
                rss = Math.max(rss ?? 0, t.maxRss ?? 0) || undefined;
                return t.seconds;
              },
            },
          ],
          opts.quick ? 1 : 2,
          ctx.outDir,
          log,
          async (_r, outs) => void (spAlloc = await allocated(outs.get('ours')!)),
        );
        const n = summarize(t2.get('native')!);
        const o = summarize(t2.get('ours')!);
        rows.push({ id: '3c', what: `sparse disk ${fmtBytes(sp.diskSize)} logical (${fmtBytes(sp.nonZeroBytes)} non-zero) --disk, Node 22`, measurement: fmtSeconds(o), baseline: `native ${fmtSeconds(n)}`, ratio: o.median / n.median, target: '<= 1.3', status: passIf(o.median / n.median <= 1.3), data: { ours: o, native: n, peakRss: rss } });
        if (spAlloc !== undefined) {
          const r = spAlloc / sp.nonZeroBytes;
          rows.push({ id: '3d', what: `allocated blocks, sparse disk output`, measurement: fmtBytes(spAlloc), baseline: `non-zero data ${fmtBytes(sp.nonZeroBytes)}`, ratio: r, target: '<= 1.05', status: passIf(r <= 1.05), notes: rss ? `peak RSS of cosi-fetch --disk here: ${fmtBytes(rss)}` : undefined });
        }
      } finally {
        await ng2.stop();
      }
    }
    if (rows.some((r) => r.id === '3a' && r.status === 'MISS') && !opts.quick) {
      const out = join(ctx.outDir, 'prof-disk.out');
      const p = await cpuProfile(tools.node22, clientArgs(url, out, 'disk'));
      await rm(out, { force: true });
      extra.profileDisk = p;
      const r = rows.find((x) => x.id === '3a')!;
      r.notes = `${r.notes ? r.notes + '; ' : ''}profile: ${fmtProfile(p)}`;
    }
  } finally {
    await nginx.stop();
  }
  return { rows, extra };
}

/** Comparison 6 (client half): peak RSS fetching the large partition of the sparse workload. */
export async function memoryComparison(ctx: FetchContext): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const { tools, log } = ctx;
  const sp = ctx.sparse;
  const rows: Row[] = [];
  if (!sp) return { rows, extra: {} };
  const root = rootRegion(sp);
  const limit = 128 * MiB + 2 ** sp.maxWindowLog;
  const what = `peak RSS, cosi-fetch --partition root, ${fmtBytes(root.uncompressedSize)} partition (${fmtBytes(root.compressedSize)} stored)`;
  const target = `<= 128 MiB + 2^${sp.maxWindowLog} = ${fmtBytes(limit)}`;
  if (!tools.client) return { rows: [notAvailable('6a', what, target, 'dist/client/cli.js missing')], extra: {} };
  if (!tools.timeV) return { rows: [notAvailable('6a', what, target, '/usr/bin/time missing (apt-get install time)')], extra: {} };
  const nginx = await startDeployedNginx(sp.dir);
  const extra: Record<string, unknown> = {};
  try {
    const url = `${nginx.url}/${sp.file}`;
    const out = join(ctx.outDir, 'mem.out');
    const runs: Array<[string, string, string, NodeJS.ProcessEnv?]> = [];
    if (tools.node22) runs.push(['6a', 'node:zlib (Node 22)', tools.node22]);
    runs.push([tools.node22 ? '6b' : '6a', 'fzstd (Node 20)', tools.node20, { ...process.env, COSI_ZSTD_DECODER: 'fzstd' }]);
    // The zstd program holds the window in its own process: /usr/bin/time reports the larger of the two.
    runs.push(['6d', 'zstd program (Node 20), max of its processes', tools.node20, { ...process.env, COSI_ZSTD_DECODER: 'zstd' }]);
    // The native pipeline's peak RSS, for scale (zstd -d holds the window plus buffers).
    await rm(out, { force: true });
    const nat = await timed(
      '/usr/bin/time',
      ['-f', '%M', 'bash', '-c', `curl -sf -r ${root.start}-${root.end} ${q(url)} | zstd -d -q -f -o ${q(out)}`],
    ).catch(() => undefined);
    const natKb = nat ? Number(nat.stderr.trim().split('\n').pop()) : NaN;
    for (const [id, label, node, env] of runs) {
      await rm(out, { force: true });
      log(`comparison 6: ${label}`);
      const t = await timed(node, clientArgs(url, out, 'partition'), { memory: true, env });
      await rm(out, { force: true });
      const rss = t.maxRss ?? NaN;
      rows.push({ id, what: `${what}, ${label}`, measurement: `${fmtBytes(rss)} (${t.seconds.toFixed(1)} s)`, baseline: `limit ${fmtBytes(limit)}${Number.isFinite(natKb) ? `; native zstd -d pipeline: max of its processes ${fmtBytes(natKb * 1024)}` : ''}`, ratio: rss / limit, target, status: passIf(rss <= limit), data: { rss, seconds: t.seconds } });
      extra[id] = { rss, seconds: t.seconds };
    }
  } finally {
    await nginx.stop();
  }
  return { rows, extra };
}

/** Comparison 7: requests and bytes on the wire for one partition, from the client and from nginx's log. */
export async function wireComparison(ctx: FetchContext): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const { tools, main } = ctx;
  const root = rootRegion(main);
  const limit = root.compressedSize + 128 * 1024;
  const what = `bytes on the wire for the root partition (${fmtBytes(root.compressedSize)} stored)`;
  if (!tools.client) return { rows: [notAvailable('7', what, '<= compressed + 128 KiB', 'dist/client/cli.js missing')], extra: {} };
  // The one nginx with an access log: this row counts what it logged.
  const nginx = await startNginx(main.dir);
  try {
    const out = join(ctx.outDir, 'wire.out');
    await mkdir(ctx.outDir, { recursive: true });
    await rm(out, { force: true });
    const t = await timed(tools.node22 ?? tools.node20, clientArgs(`${nginx.url}/${main.file}`, out, 'partition', true));
    await rm(out, { force: true });
    const summary = JSON.parse(t.stdout) as { requests?: number; bytesTransferred?: number };
    const logText = await nginx.accessLog();
    const lines = logText.split('\n').filter(Boolean);
    const logBytes = lines.reduce((a, l) => a + Number(l.split(' ').pop() ?? 0), 0);
    const wire = logBytes;
    const ratio = wire / limit;
    return {
      rows: [
        {
          id: '7',
          what,
          measurement: `${fmtBytes(wire)} (${wire} B) in ${lines.length} requests per nginx log; client says ${summary.requests ?? '?'} requests, ${summary.bytesTransferred ?? '?'} B`,
          baseline: `compressed ${root.compressedSize} B + 128 KiB = ${limit} B`,
          ratio,
          target: '<= 1.00',
          status: passIf(wire <= limit && (summary.bytesTransferred ?? 0) <= limit),
          data: { summary, nginxRequests: lines.length, nginxBytes: logBytes, log: lines.slice(0, 20) },
        },
      ],
      extra: {},
    };
  } finally {
    await nginx.stop();
  }
}

export { nonZeroBytes };
