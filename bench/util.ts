/**
 * Shared bench plumbing: options, timing of child processes, statistics,
 * peak memory via /usr/bin/time -v, and where our tools live.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from '../test/fixtures.js';

const run = promisify(execFile);

export interface BenchOptions {
  quick: boolean;
  /** Comparison numbers to run; empty means all. */
  only: Set<number>;
  rounds: number;
  /** Seconds per wrk run. */
  duration: number;
  /** Where workloads are cached (never inside the repo). */
  cacheDir: string;
  resultsDir: string;
  /** Comparisons 1, 2, 3, 4 and 7 (and 9 when asked) on the low-ratio workload alone (rows end in -low): bench-main is not built. */
  lowOnly: boolean;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  let quick = env.BENCH_QUICK === '1';
  let only = env.BENCH_ONLY ?? '';
  let rounds = env.BENCH_ROUNDS ? Number(env.BENCH_ROUNDS) : undefined;
  let lowOnly = env.BENCH_LOW_ONLY === '1';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--only') only = argv[++i] ?? '';
    else if (a.startsWith('--only=')) only = a.slice(7);
    else if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a.startsWith('--rounds=')) rounds = Number(a.slice(9));
    else if (a === '--low-only') lowOnly = true;
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node dist/bench/run.js [--quick] [--only 1,3,...] [--rounds N] [--low-only]\n(env: BENCH_QUICK=1, BENCH_ONLY, BENCH_ROUNDS, BENCH_CACHE, BENCH_LOW_ONLY=1)\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  const set = new Set(
    only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map(Number),
  );
  for (const n of set) if (!Number.isInteger(n) || n < 1 || n > 10) throw new Error(`--only: comparisons are 1..10, got ${n}`);
  if (lowOnly) {
    if (set.size === 0) for (const n of [1, 2, 3, 4, 7]) set.add(n);
    for (const n of set) if (![1, 2, 3, 4, 7, 9].includes(n)) throw new Error(`--low-only runs comparisons 1, 2, 3, 4, 7 and 9, not ${n}`);
  }
  const r = rounds ?? (quick ? 2 : 5);
  if (!Number.isInteger(r) || r < 1) throw new Error(`--rounds must be a positive integer`);
  return {
    quick,
    only: set,
    rounds: r,
    duration: quick ? 2 : 5,
    cacheDir: env.BENCH_CACHE ?? join(tmpdir(), 'cosi-stream-bench'),
    resultsDir: join(REPO, 'bench', 'results'),
    lowOnly,
  };
}

export function wants(o: BenchOptions, n: number): boolean {
  return o.only.size === 0 || o.only.has(n);
}

// ---------------------------------------------------------------------------
// Statistics

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
  samples: number[];
}

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, n: s.length, samples: xs };
}

/** "1.23 s (1.10-1.40, n=5)" */
export function fmtSeconds(s: Summary): string {
  return `${s.median.toFixed(2)} s (${s.min.toFixed(2)}-${s.max.toFixed(2)}, n=${s.n})`;
}

export { formatBytes as fmtBytes } from '../shared/units.js';

// ---------------------------------------------------------------------------
// Processes

export interface Timed {
  seconds: number;
  stdout: string;
  stderr: string;
  /** Peak RSS in bytes when run under /usr/bin/time -v. */
  maxRss?: number;
}

export const TIME_BIN = '/usr/bin/time';

/**
 * Runs a command to completion and times it from spawn to exit. With
 * `memory`, wraps it in /usr/bin/time -v (writing its report to a file so
 * the command's own stderr stays separate) and reads the peak RSS.
 */
export async function timed(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; memory?: boolean; cwd?: string } = {}): Promise<Timed> {
  let file = cmd;
  let argv = args;
  const memFile = opts.memory ? join(tmpdir(), `cosi-bench-time-${process.pid}-${Date.now()}.txt`) : undefined;
  if (memFile) {
    file = TIME_BIN;
    argv = ['-v', '-o', memFile, cmd, ...args];
  }
  const t0 = process.hrtime.bigint();
  const child = spawn(file, argv, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => void (stdout.length < 4 << 20 && (stdout += d)));
  child.stderr.on('data', (d: Buffer) => void (stderr.length < 1 << 20 && (stderr += d)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let maxRss: number | undefined;
  if (memFile) {
    const { readFile, rm } = await import('node:fs/promises');
    const rep = await readFile(memFile, 'utf8').catch(() => '');
    await rm(memFile, { force: true });
    const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(rep);
    if (m) maxRss = Number(m[1]) * 1024;
  }
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return { seconds, stdout, stderr, maxRss };
}

export async function sh(script: string): Promise<string> {
  const { stdout } = await run('bash', ['-c', script], { maxBuffer: 64 << 20 });
  return stdout;
}

// ---------------------------------------------------------------------------
// Our tools

export const CLIENT_CLI = join(REPO, 'dist', 'client', 'cli.js');
export const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');

export interface Tools {
  node20: string;
  /** Node 22 (node:zlib zstd); undefined when npx cannot provide it. */
  node22?: string;
  client: boolean;
  server: boolean;
  timeV: boolean;
  wrk: boolean;
}

export function findTools(): Tools {
  let node22: string | undefined;
  if (process.versions.node.split('.')[0] === '22') node22 = process.execPath;
  else {
    const r = spawnSync('npx', ['-y', '-p', 'node@22', 'which', 'node'], { encoding: 'utf8', timeout: 180_000 });
    const p = r.stdout?.trim().split('\n').pop();
    if (r.status === 0 && p && existsSync(p)) node22 = p;
  }
  return {
    node20: process.execPath,
    node22,
    client: existsSync(CLIENT_CLI),
    server: existsSync(SERVER_CLI),
    timeV: existsSync(TIME_BIN),
    wrk: existsSync('/usr/bin/wrk'),
  };
}

export function nodeVersion(bin: string): string {
  return spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
}

/** Runs of a measurement whose 1-minute load average moved by more than 1 are repeated at most this often. */
export const MAX_RERUNS = 2;

/** Every attempt's load, before -> after, and how many reruns there were. */
export function loadNote(loads: ReadonlyArray<readonly [number, number]>): string {
  const runs = loads.map(([a, b]) => `${a.toFixed(2)}->${b.toFixed(2)}`).join(', then ');
  return `load ${runs}${loads.length > 1 ? ` (${loads.length - 1} rerun${loads.length > 2 ? 's' : ''}; the last kept)` : ''}`;
}
