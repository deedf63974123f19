/**
 * Shared by the client-*.test.ts files: run the real cosi-fetch bin (also on
 * a pseudo-terminal), compare byte ranges of files without loading them
 * whole, check whole-disk outputs, craft broken archives, and stand up
 * cosi-server over a temporary catalog.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { open as open_ } from '../client/index.js';
import { startServer, type RunningServer as ServerRunning } from '../server/server.js';
import { PACK_CLI, pythonTarOffsets, REPO, sameBytes, sh } from './fixtures.js';
import { http, tempCatalog } from './server-helpers.js';

export const FETCH_CLI = join(REPO, 'dist', 'client', 'cli.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runFetch(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return runBin(FETCH_CLI, args, opts);
}

/** The real cosi-pack bin (cosi-pack validate, for one). */
export function runPack(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return runBin(PACK_CLI, args, opts);
}

/** Any of the three bins, by path, as a user runs it. */
export function runBin(bin: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

/** The opening read (DEFAULT_HEAD_BYTES), and what each later read of the tar walk brings: a header and the 16 KiB after it. */
export const HEAD_READ = 64 * 1024;
export const WALK_READ = 512 + 16 * 1024;

/**
 * Reads (requests, over HTTP) cosi-fetch needs to open `cosi`: the head, then
 * one per tar header, end-of-archive marker included, that no earlier read
 * covered. Worked out from Python's tarfile offsets, not from our walker.
 */
export async function openReads(cosi: string): Promise<number> {
  const members = await pythonTarOffsets(cosi);
  const total = (await stat(cosi)).size;
  const last = members[members.length - 1]!;
  const end = last.offsetData + Math.ceil(last.size / 512) * 512;
  const pieces: Array<[number, number]> = [[0, Math.min(HEAD_READ, total)]];
  const need = (from: number, to: number) => {
    if (pieces.some(([a, b]) => from >= a && Math.min(to, total) <= b)) return;
    pieces.push([from, Math.min(from + WALK_READ, total)]);
  };
  // marker and metadata.json come with the head; every later header block, then the two zero blocks.
  for (const m of members.slice(2)) need(m.offset, m.offsetData);
  need(end, end + 1024);
  return pieces.length;
}

/** Files in a directory other than the expected ones (leftover temporaries show up here). */
export async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/**
 * A COSI-shaped tar from members given as (name, bytes), written by Python's
 * tarfile in PAX format (plain USTAR headers for short names), in order.
 */
export async function pyTar(out: string, members: Array<{ name: string; file: string }>): Promise<void> {
  const py =
    'import sys, tarfile\n' +
    "with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:\n" +
    '    args = sys.argv[2:]\n' +
    '    for i in range(0, len(args), 2):\n' +
    '        ti = t.gettarinfo(args[i + 1], arcname=args[i])\n' +
    '        ti.uid = ti.gid = 0; ti.uname = ti.gname = ""; ti.mtime = 0\n' +
    "        with open(args[i + 1], 'rb') as f: t.addfile(ti, f)\n";
  await sh('python3', ['-c', py, out, ...members.flatMap((m) => [m.name, m.file])]);
}

/** One error line of `prog`, matching `re`, exit `code`, and no errno word or Node/OpenSSL wording anywhere. */
export function failsWith(r: CliResult, prog: string, code: number, re: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith(`${prog}: error:`));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, re);
  assert.doesNotMatch(r.stderr, /\bE[A-Z]{3,}\b|illegal operation|ERR_|SSL routines|PEM routines|\.c:\d+/, r.stderr);
}

/** The last line of stderr that cosi-fetch wrote as an error. */
export function errorLine(r: CliResult): string {
  return r.stderr.split('\n').filter((l) => l.startsWith('cosi-fetch: error:')).join('\n');
}

/** Partition placement and metadata hash of a COSI file, via the library. */
export async function layoutOf(cosi: string) {
  const img = await open_(cosi);
  try {
    return { parts: img.partitions, disk: img.metadata.disk!, sha: img.metadataSha384, gpt: img.gpt! };
  } finally {
    await img.close();
  }
}

/**
 * A whole-disk output (a file, or a device of exactly disk.size) checked
 * against its source: sgdisk -v passes (512-byte sectors), a file's size is
 * disk.size, the primary and backup table regions and
 * every partition not shrunk are byte-identical to the source disk.
 */
export async function checkDisk(fx: { cosi: string; disk: string }, out: string): Promise<void> {
  await sh('sgdisk', ['-v', out]);
  const { parts, disk, gpt } = await layoutOf(fx.cosi);
  const st = await stat(out);
  // A block device is not a file: its size is what it is, the regions still have to match.
  if (st.isFile()) assert.equal(st.size, disk.size);
  assert.ok(await sameBytes(out, 0, fx.disk, 0, gpt.primaryRegionSize), 'primary GPT');
  const tail = gpt.numEntries * gpt.entrySize + disk.lbaSize;
  const outEnd = st.isFile() ? disk.size : Number((await sh('blockdev', ['--getsize64', out])).trim());
  assert.ok(await sameBytes(out, outEnd - tail, fx.disk, disk.size - tail, tail), 'backup GPT');
  for (const p of parts) {
    if (p.shrunk) continue;
    assert.ok(await sameBytes(out, p.gptPartition!.offset, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), p.path);
  }
}

/**
 * A disk of three ext4 partitions (root, srv, var) each holding `blobBytes`
 * of random data, packed by our cosi-pack: three images that are all large
 * compressed, unlike the standard fixtures whose ESP and /srv fit in the
 * first 64 KiB read. Built fresh into `dir` (about a second).
 */
export async function packThreeBig(dir: string, blobBytes = 1_500_000): Promise<{ cosi: string; disk: string }> {
  const disk = join(dir, 'three.raw');
  await sh('truncate', ['-s', `${3 * 4 + 2}M`, disk]);
  await sh('sgdisk', ['-n', '1:2048:+4M', '-t', '1:8304', '-c', '1:root', '-n', '2:0:+4M', '-t', '2:8306', '-c', '2:srv', '-n', '3:0:+4M', '-t', '3:8310', '-c', '3:var', disk]);
  for (const i of [1, 2, 3]) {
    const tree = join(dir, `tree${i}`);
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'blob'), randomBytes(blobBytes));
    const img = join(dir, `p${i}.img`);
    await sh('mkfs.ext4', ['-q', '-F', '-d', tree, img, '4M']);
    // Partition i starts at 1 MiB + (i-1) * 4 MiB, as sgdisk placed them above.
    await sh('dd', [`if=${img}`, `of=${disk}`, 'bs=1M', `seek=${1 + (i - 1) * 4}`, 'conv=notrunc', 'status=none']);
    await rm(img);
    await rm(tree, { recursive: true });
  }
  const osRelease = join(dir, 'os-release');
  await writeFile(osRelease, 'ID=three\nNAME="Three"\n');
  const cosi = join(dir, 'three.cosi');
  await sh(process.execPath, [PACK_CLI, disk, '-o', cosi, '-q', '--os-release', osRelease, '--level', '1']);
  return { cosi, disk };
}

/** cosi-server in-process over a temporary catalog of the given files (id = path without .cosi). */
export async function startCatalogServer(files: Record<string, string>): Promise<ServerRunning & { dir: string; stop(): Promise<void>; log: Array<Record<string, unknown>> }> {
  const cat = await tempCatalog(files);
  const log: Array<Record<string, unknown>> = [];
  try {
    const srv = await startServer({ root: cat.dir, port: 0, host: '127.0.0.1', log: (l) => void log.push(l), rescanSeconds: 0 });
    return Object.assign(srv, {
      dir: cat.dir,
      log,
      stop: async () => {
        await srv.close(500);
        await cat.cleanup();
      },
    });
  } catch (err) {
    await cat.cleanup();
    throw err;
  }
}

/** One sample of the server's /metrics, read over HTTP as a scraper would (0 when absent). */
export async function scrapeMetric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await http(base, '/metrics')).body.toString('utf8');
  const want = Object.entries(labels);
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (want.every(([k, v]) => got.get(k) === v) && got.size === want.length) return Number(m[3]);
  }
  return 0;
}

/** cosi-fetch with stderr on a pseudo-terminal (util-linux script): what a person at a console sees. */
export async function runFetchOnTty(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = [process.execPath, FETCH_CLI, ...args].map(quote).join(' ');
  return new Promise((resolve, reject) => {
    // -e: script exits with the child's status; the pty carries both stdout and stderr.
    const child = spawn('script', ['-q', '-e', '-c', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

/** A new empty directory under `work` for each call: every test writes where no other test does. */
export function freshDirs(work: string): () => Promise<string> {
  let n = 0;
  return async () => {
    const d = join(work, `t${n++}`);
    await mkdir(d);
    return d;
  };
}
