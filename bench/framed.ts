/**
 * Comparison 9, framed images (issue 15): the main workload reframed at the
 * recommended frame size (cosi-pack reframe), then
 *   9a/9b: the root fetched by cosi-fetch (--threads 2, --threads 1) against
 *          the native pipeline on the same framed file, from nginx, rounds
 *          alternating; CPU seconds per GiB decoded for each;
 *   9e/9f: the same on Node 22 (node:zlib lanes in worker threads), when it is there;
 *   9c:    the archive's size against the one-frame archive;
 *   9d:    a --resume fetch stalled at 50% of the root and killed with
 *          SIGKILL, then run again: bytes fetched twice, against the frame
 *          the stall fell in (frames of one size compress to very different
 *          sizes: 11 to 25 MiB on the low-ratio root, so an average says little).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FetchContext } from './fetch.js';
import { notAvailable, passIf, type Row } from './report.js';
import { startNginx } from './servers.js';
import { CLIENT_CLI, fmtBytes, fmtSeconds, summarize, timed } from './util.js';
import { describe, type RegionInfo, type Workload } from './workload.js';
import { parseSeekTable, seekFrames, seekTableSize, type SeekFrame } from '../shared/zstd/seek-table.js';
import { PACK_CLI } from '../test/fixtures.js';
import { startFaultProxy } from '../test/fault-proxy.js';

/** The frame size README recommends (measured here: 9c). */
export const RECOMMENDED_FRAME = 64 << 20;
const MiB = 1 << 20;

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function rootOf(w: Workload): RegionInfo {
  const r = w.regions.find((x) => x.mountPoint === '/');
  if (!r) throw new Error(`${w.name}: no root partition`);
  return r;
}

/** The main workload reframed (cached beside it). */
async function framedWorkload(main: Workload, frameSize: number, log: (s: string) => void): Promise<Workload> {
  const dir = `${main.dir}-framed-${frameSize / MiB}m`;
  const file = main.file.replace(/\.cosi$/, '-framed.cosi');
  if (!existsSync(join(dir, file))) {
    log(`reframing ${main.file} at ${frameSize / MiB} MiB frames`);
    const work = `${dir}.tmp-${process.pid}`;
    await mkdir(work, { recursive: true });
    await timed(process.execPath, [PACK_CLI, 'reframe', main.cosi, '-o', join(work, file), '--frame-size', String(frameSize), '-q']);
    await rename(work, dir).catch(async () => rm(work, { recursive: true, force: true }));
  }
  return describe(`${main.name}-framed`, main.recipe, dir, file, main.nonZeroBytes, 0);
}

/** Wall and CPU (user + system, children included) seconds of one command, under /usr/bin/time. */
async function cpuTimed(cmd: string, args: string[]): Promise<{ wall: number; cpu: number }> {
  const t = await timed('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args]);
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(t.stderr);
  return { wall: t.seconds, cpu: m ? Number(m[1]) + Number(m[2]) : NaN };
}

export async function framedComparisons(ctx: FetchContext): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const { main, log, opts, tools } = ctx;
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};
  const framed = await framedWorkload(main, RECOMMENDED_FRAME, log);
  const root = rootOf(framed);
  const plainRoot = rootOf(main);
  const nginx = await startNginx(framed.dir);
  try {
    const url = `${nginx.url}/${framed.file}`;
    const hashFile = join(ctx.outDir, 'framed-native.sha384');
    const native = (out: string) => ['-c', `set -e -o pipefail; curl -sf -r ${root.start}-${root.end} ${q(url)} | tee >(sha384sum > ${q(hashFile)}) | zstd -d -q -f -o ${q(out)}; wait`];
    const ours = (threads: number, out: string) => [CLIENT_CLI, '--partition', 'root', '-o', out, '--threads', String(threads), '--progress', 'none', '-q', url];
    type Contender = [string, (out: string) => Promise<{ wall: number; cpu: number }>];
    const node22 = tools.node22;
    const contenders: Contender[] = [
      ['native', (out) => cpuTimed('bash', native(out))],
      ['threads-2', (out) => cpuTimed(tools.node20, ours(2, out))],
      ['threads-1', (out) => cpuTimed(tools.node20, ours(1, out))],
      // Node 22 decodes the lanes with node:zlib in worker threads instead of zstd processes.
      ...(node22 ? ([['node22-threads-2', (out) => cpuTimed(node22, ours(2, out))], ['node22-threads-1', (out) => cpuTimed(node22, ours(1, out))]] satisfies Contender[]) : []),
    ];
    const wall = new Map<string, number[]>(contenders.map(([n]) => [n, []]));
    const cpu = new Map<string, number[]>(contenders.map(([n]) => [n, []]));
    log(`comparison 9: framed root (${fmtBytes(root.compressedSize)} -> ${fmtBytes(root.uncompressedSize)}, ${RECOMMENDED_FRAME / MiB} MiB frames)`);
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < contenders.length; i++) {
        const [name, run] = contenders[(i + round) % contenders.length]!;
        const out = join(ctx.outDir, `framed-${name}.img`);
        await rm(out, { force: true });
        const t = await run(out);
        wall.get(name)!.push(t.wall);
        cpu.get(name)!.push(t.cpu);
        log(`  round ${round + 1}/${opts.rounds} ${name}: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU`);
        if (round === 0 && name !== 'native') {
          const a = await readFile(out);
          const nat = join(ctx.outDir, 'framed-native.img');
          if (existsSync(nat) && !a.equals(await readFile(nat))) throw new Error(`${name}: output differs from the native pipeline's`);
        }
        if (round > 0) await rm(out, { force: true });
      }
    }
    const gib = root.uncompressedSize / 2 ** 30;
    const cpuPerGiB = (n: string) => summarize(cpu.get(n)!).median / gib;
    const nat = summarize(wall.get('native')!);
    extra.framedTimes = Object.fromEntries(wall);
    extra.framedCpuSecondsPerGiB = Object.fromEntries(contenders.map(([n]) => [n, cpuPerGiB(n)]));
    const rowsOf = [['9a', 'threads-2', '<= 0.8'], ['9b', 'threads-1', 'info'], ['9e', 'node22-threads-2', '<= 0.8'], ['9f', 'node22-threads-1', 'info']] as const;
    for (const [id, name, target] of rowsOf) {
      if (!wall.has(name)) continue;
      const on22 = name.startsWith('node22');
      const s = summarize(wall.get(name)!);
      const ratio = s.median / nat.median;
      rows.push({
        id,
        what: `framed root (${fmtBytes(root.compressedSize)} -> ${fmtBytes(root.uncompressedSize)}, ${RECOMMENDED_FRAME / MiB} MiB frames) from nginx, cosi-fetch --${name.replace('node22-', '').replace('-', ' ')} (${on22 ? 'Node 22, node:zlib lanes in worker threads' : 'Node 20, zstd program lanes'})`,
        measurement: `${fmtSeconds(s)}, ${cpuPerGiB(name).toFixed(2)} CPU s/GiB`,
        baseline: `curl | tee >(sha384sum) | zstd -d on the same file ${fmtSeconds(nat)}, ${cpuPerGiB('native').toFixed(2)} CPU s/GiB`,
        ratio,
        target,
        status: target === 'info' ? 'INFO' : passIf(ratio <= 0.8),
        notes: target !== 'info' ? `2 cores shared with other work; with N lanes the decode scales until the main thread's SHA-384 and input copies (or the network) limit it` : undefined,
      });
    }
    const size = (await stat(framed.cosi)).size;
    const costRatio = root.compressedSize / plainRoot.compressedSize;
    rows.push({
      id: '9c',
      what: `size cost of ${RECOMMENDED_FRAME / MiB} MiB frames (level 9, --long=27): root image, whole archive`,
      measurement: `root ${fmtBytes(root.compressedSize)}, archive ${fmtBytes(size)}`,
      baseline: `one frame: root ${fmtBytes(plainRoot.compressedSize)}, archive ${fmtBytes(main.archiveSize)}`,
      ratio: costRatio,
      target: '<= 1.06',
      status: passIf(costRatio <= 1.06),
    });
    rows.push(await resumeRow(ctx, framed, root, nginx.port));
  } finally {
    await nginx.stop();
  }
  return { rows, extra };
}

/** The root image's frames, from the seek table its entry ends with. */
async function rootFrames(cosi: string, root: RegionInfo): Promise<SeekFrame[]> {
  const fh = await open(cosi, 'r');
  try {
    const len = Math.min(root.compressedSize, 1 << 20);
    const tail = Buffer.alloc(len);
    await fh.read(tail, 0, len, root.end + 1 - len);
    const size = seekTableSize(tail, 'root');
    if (size === undefined) throw new Error(`${cosi}: the root image has no seek table`);
    return seekFrames(parseSeekTable(tail.subarray(len - size), 'root'));
  } finally {
    await fh.close();
  }
}

/** 9d: --resume stalled at half the root, SIGKILL, rerun; bytes fetched twice. */
async function resumeRow(ctx: FetchContext, framed: Workload, root: RegionInfo, nginxPort: number): Promise<Row> {
  const what = `--resume after kill -9 at 50% of the framed root: bytes fetched twice`;
  let stall: number | undefined;
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: nginxPort }, () => (stall === undefined ? { kind: 'pass' } : { kind: 'stall', afterBytes: stall }), { maxConnections: 100 });
  const dir = join(ctx.outDir, 'resume');
  await mkdir(dir, { recursive: true });
  try {
    const url = `${proxy.url}/${framed.file}`;
    const args = (out: string) => [CLIENT_CLI, '--partition', 'root', '-o', out, '--resume', '--json', '-q', '--progress', 'none', url];
    const clean = JSON.parse((await timed(process.execPath, args(join(dir, 'clean.img')))).stdout);
    await rm(join(dir, 'clean.img'), { force: true });
    const overhead = clean.bytesTransferred - root.compressedSize;
    stall = overhead + Math.floor(root.compressedSize / 2);
    const before = proxy.connections;
    const out = join(dir, 'root.img');
    const child = spawn(process.execPath, args(out), { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.on('close', resolve));
    const journal = join(dir, '.root.img.cosi-journal.json');
    let last = '';
    let still = 0;
    for (let i = 0; i < 1200 && still < 20; i++) {
      await sleep(100);
      const j = await readFile(journal, 'utf8').catch(() => '');
      still = j && j === last ? still + 1 : 0;
      last = j;
    }
    child.kill('SIGKILL');
    await exited;
    stall = undefined;
    if (proxy.connections - before !== 1) return notAvailable('9d', what, '< one frame + the open', `the stalled run used ${proxy.connections - before} connections; the count needs one`);
    const done = last ? (JSON.parse(last) as { done: number }).done : 0;
    const again = JSON.parse((await timed(process.execPath, args(out))).stdout);
    const refetched = overhead + Math.floor(root.compressedSize / 2) + again.bytesTransferred - clean.bytesTransferred;
    const frames = (await rootFrames(framed.cosi, root)).filter((f) => f.decompressedSize > 0);
    const average = Math.ceil(root.compressedSize / frames.length);
    const half = Math.floor(root.compressedSize / 2);
    const hit = frames.find((f) => f.compressedOffset + f.compressedSize > half)!;
    const left = await readdir(dir);
    const ok = again.partitions[0].resumedFrom === done && left.length === 1 && refetched < hit.compressedSize + overhead;
    return {
      id: '9d',
      what,
      measurement: `${fmtBytes(refetched)} fetched twice (the open: ${fmtBytes(overhead)}; journal at entry ${done})`,
      baseline: `the stalled frame (entry ${hit.index}) ${fmtBytes(hit.compressedSize)} (average frame ${fmtBytes(average)}), a restart without --resume ${fmtBytes(half + overhead)}`,
      ratio: refetched / hit.compressedSize,
      target: '< the stalled frame + the open',
      status: passIf(ok),
    };
  } finally {
    stall = undefined;
    await proxy.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
