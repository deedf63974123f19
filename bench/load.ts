/**
 * Comparison 4: cosi-server against nginx serving the same archive, driven
 * by wrk with a Lua script that walks Range requests over the file; and the
 * server's peak RSS (VmHWM) under that load (comparison 6, server half).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmtProfile, summarizeProfileDir, type ProfileSummary } from './profile.js';
import { notAvailable, passIf, type Row } from './report.js';
import { startCosiServer, startDeployedNginx } from './servers.js';
import { fmtBytes, loadNote, MAX_RERUNS, summarize, timed, type BenchOptions, type Tools } from './util.js';
import type { Workload } from './workload.js';

const MiB = 1024 * 1024;

// Each wrk thread seeds its own walk from its id, so threads do not ask for the same range in lockstep.
const LUA = `
local len = tonumber(os.getenv("RANGE_LEN"))
local size = tonumber(os.getenv("FILE_SIZE"))
local path = os.getenv("RANGE_PATH")
local slots = math.max(1, math.floor(size / len))
local n = 0
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function request()
  local off = ((n * 7919 + (tid or 0) * 104729) % slots) * len
  n = n + 1
  return wrk.format("GET", path, { ["Range"] = "bytes=" .. off .. "-" .. (off + len - 1) })
end
`;

interface WrkResult {
  rps: number;
  bytesPerSec: number;
  errors: number;
}

async function wrk(script: string, url: string, path: string, len: number, size: number, conns: number, seconds: number): Promise<WrkResult> {
  const threads = Math.min(conns, 2);
  const t = await timed('/usr/bin/wrk', ['-t', String(threads), '-c', String(conns), '-d', `${seconds}s`, '--timeout', '30s', '-s', script, url], {
    env: { ...process.env, RANGE_LEN: String(len), FILE_SIZE: String(size), RANGE_PATH: path },
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(t.stdout)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(t.stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(t.stdout);
  const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, x) => a + Number(x), 0) : 0);
  return { rps, bytesPerSec: rps * len, errors };
}

export async function loadComparisons(opts: BenchOptions, tools: Tools, w: Workload, tmp: string, log: (s: string) => void): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  // The quick archive is smaller than 64 MiB: large ranges are then half the file.
  const big = Math.min(64 * MiB, Math.floor(w.archiveSize / 2 / MiB) * MiB);
  // The baseline is nginx as deployed (a worker per core, no access log). 4a-4c: cosi-server as one
  // process (--workers 1); 4d, 4e: with a worker per core (the default). wrk runs on the same cores.
  const cores = availableParallelism();
  const cases = [
    { id: '4a', len: big, conns: 1, target: 0.8, metric: 'MB/s', workers: 1 },
    { id: '4b', len: big, conns: 8, target: 0.8, metric: 'MB/s', workers: 1 },
    { id: '4c', len: 4096, conns: 64, target: 0.5, metric: 'req/s', workers: 1 },
    { id: '4d', len: 4096, conns: 64, target: 0.8, metric: 'req/s', workers: cores },
    { id: '4e', len: big, conns: 8, target: 1.0, metric: 'MB/s', workers: cores },
  ];
  const label = (c: (typeof cases)[number]) =>
    `${c.len >= MiB ? `${c.len / MiB} MiB` : `${c.len / 1024} KiB`} ranges, ${c.conns} concurrent, --workers ${c.workers} vs nginx worker_processes auto`;
  const why = !tools.wrk ? '/usr/bin/wrk missing' : !tools.server ? 'dist/server/cli.js missing' : !tools.node22 ? 'Node 22 missing' : undefined;
  if (why) {
    return { rows: [...cases.map((c) => notAvailable(c.id, `server throughput vs nginx, ${label(c)}`, `>= ${c.target}`, why)), notAvailable('6c', 'peak RSS of cosi-server under comparison 4', '<= 256 MiB', why)], extra: {} };
  }
  const script = join(tmp, 'range.lua');
  await writeFile(script, LUA);
  let server: Awaited<ReturnType<typeof startCosiServer>>;
  let cluster: Awaited<ReturnType<typeof startCosiServer>>;
  try {
    server = await startCosiServer(tools.node22!, w.dir);
    cluster = await startCosiServer(tools.node22!, w.dir, [], cores);
  } catch (err) {
    const msg = `cosi-server did not start: ${(err as Error).message.split('\n')[0]}`;
    log(msg);
    return { rows: [...cases.map((c) => notAvailable(c.id, `server throughput vs nginx, ${label(c)}`, `>= ${c.target}`, msg)), notAvailable('6c', 'peak RSS of cosi-server under comparison 4', '<= 256 MiB', msg)], extra: {} };
  }
  const nginx = await startDeployedNginx(w.dir);
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};
  try {
    const size = w.archiveSize;
    const rounds = opts.quick ? 1 : Math.min(opts.rounds, 3);
    for (const c of cases) {
      const ours = c.workers === 1 ? server : cluster;
      // The machine is shared: a row during which the 1-minute load average moved by more than 1 is
      // run again (at most twice), and every attempt's load is kept in the row.
      const loads: Array<[number, number]> = [];
      let res: Record<'nginx' | 'server', WrkResult[]> = { nginx: [], server: [] };
      for (let attempt = 0; attempt <= MAX_RERUNS; attempt++) {
        const before = loadavg()[0]!;
        res = { nginx: [], server: [] };
        for (let r = 0; r < rounds; r++) {
          const order: Array<'nginx' | 'server'> = r % 2 ? ['server', 'nginx'] : ['nginx', 'server'];
          for (const who of order) {
            const base = who === 'nginx' ? nginx.url : ours.url;
            const path = who === 'nginx' ? `/${w.file}` : `/cosi/${w.file}`;
            const x = await wrk(script, `${base}${path}`, path, c.len, size, c.conns, opts.duration);
            log(`  ${c.id} round ${r + 1}/${rounds} ${who}: ${x.rps.toFixed(1)} req/s, ${(x.bytesPerSec / 1e6).toFixed(0)} MB/s${x.errors ? `, ${x.errors} errors` : ''}`);
            res[who].push(x);
          }
        }
        const after = loadavg()[0]!;
        loads.push([before, after]);
        if (Math.abs(after - before) <= 1) break;
        if (attempt < MAX_RERUNS) log(`  ${c.id}: 1-min load moved ${before.toFixed(2)} -> ${after.toFixed(2)}: running it again`);
      }
      const note = loadNote(loads);
      const pick = (xs: WrkResult[]) => summarize(xs.map((x) => (c.metric === 'MB/s' ? x.bytesPerSec / 1e6 : x.rps)));
      const s = pick(res.server);
      const n = pick(res.nginx);
      const ratio = s.median / n.median;
      const errs = res.server.reduce((a, x) => a + x.errors, 0);
      const nginxErrs = res.nginx.reduce((a, x) => a + x.errors, 0);
      const fmt = (x: ReturnType<typeof summarize>) => `${x.median.toFixed(0)} ${c.metric} (${x.min.toFixed(0)}-${x.max.toFixed(0)}, n=${x.n})`;
      rows.push({
        id: c.id,
        what: `server throughput vs nginx, ${label(c)} (wrk, ${opts.duration} s each)`,
        measurement: fmt(s),
        baseline: `nginx ${fmt(n)}`,
        ratio,
        target: `>= ${c.target}`,
        status: errs ? 'MISS' : nginxErrs ? 'N/A' : passIf(ratio >= c.target),
        notes: [note, errs ? `${errs} non-2xx/socket errors from cosi-server` : '', nginxErrs ? `${nginxErrs} errors from nginx: baseline invalid` : ''].filter(Boolean).join('; '),
        data: { ...res, loads },
      });
    }
    const rss = await server.peakRss();
    rows.push({
      id: '6c',
      what: 'peak RSS (VmHWM) of cosi-server through comparison 4',
      measurement: rss === undefined ? 'unknown' : fmtBytes(rss),
      baseline: 'limit 256 MiB',
      ratio: rss === undefined ? null : rss / (256 * MiB),
      target: '<= 256 MiB',
      status: passIf(rss === undefined ? undefined : rss <= 256 * MiB),
    });
    extra.serverPeakRss = rss;
  } finally {
    await server.stop();
    await cluster.stop();
    await nginx.stop();
  }
  // Where the server spends its time in each missed case: a fresh server under --cpu-prof, the same wrk run.
  const profiles: Record<string, ProfileSummary> = {};
  for (const c of cases) {
    const row = rows.find((r) => r.id === c.id);
    if (row?.status !== 'MISS' || opts.quick) continue;
    const dir = await mkdtemp(join(tmpdir(), 'cosi-bench-sprof-'));
    try {
      const srv = await startCosiServer(tools.node22!, w.dir, ['--cpu-prof', '--cpu-prof-dir', dir], c.workers);
      const t0 = Date.now();
      await wrk(script, `${srv.url}/cosi/${w.file}`, `/cosi/${w.file}`, c.len, w.archiveSize, c.conns, opts.duration);
      await srv.stop();
      profiles[c.id] = await summarizeProfileDir(dir, (Date.now() - t0) / 1000);
      row.notes = `${row.notes ? row.notes + '; ' : ''}server profile: ${fmtProfile(profiles[c.id]!, 8)}`;
    } catch (err) {
      log(`profiling ${c.id} failed: ${(err as Error).message}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  extra.serverProfiles = profiles;
  return { rows, extra };
}
