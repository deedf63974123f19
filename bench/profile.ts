/**
 * Where a missed target spends its time: run the command under
 * `node --cpu-prof` and reduce the profile to its top self-time frames.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO } from '../test/fixtures.js';
import { timed } from './util.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface Frame {
  frame: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  wallSeconds: number;
  sampledMs: number;
  top: Frame[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  let where = f.url.replace(/^file:\/\//, '');
  if (where.startsWith(REPO)) where = relative(REPO, where);
  else if (where.includes('/node_modules/')) where = where.slice(where.lastIndexOf('/node_modules/') + 14);
  return `${name} ${where}:${f.lineNumber + 1}`;
}

export async function cpuProfile(node: string, args: string[], topN = 12, env?: NodeJS.ProcessEnv): Promise<ProfileSummary> {
  const dir = await mkdtemp(join(tmpdir(), 'cosi-bench-prof-'));
  try {
    const t = await timed(node, ['--cpu-prof', '--cpu-prof-dir', dir, ...args], { env });
    return await summarizeProfileDir(dir, t.seconds, topN);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Reduces the .cpuprofile that a process run with --cpu-prof-dir=dir left there (the largest: with --workers, a busy worker's, not the idle primary's). */
export async function summarizeProfileDir(dir: string, wallSeconds: number, topN = 12): Promise<ProfileSummary> {
  {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) throw new Error('no .cpuprofile written');
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(dir, f))).size));
    const biggest = files[sizes.indexOf(Math.max(...sizes))]!;
    const prof = JSON.parse(await readFile(join(dir, biggest), 'utf8')) as { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[] };
    const totalUs = prof.endTime - prof.startTime;
    const perSample = prof.samples.length ? totalUs / prof.samples.length / 1000 : 0;
    const byLabel = new Map<string, number>();
    for (const n of prof.nodes) {
      if (!n.hitCount) continue;
      const k = label(n);
      byLabel.set(k, (byLabel.get(k) ?? 0) + n.hitCount * perSample);
    }
    const sampledMs = totalUs / 1000;
    const top = [...byLabel.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([frame, ms]) => ({ frame, selfMs: Math.round(ms), percent: Math.round((1000 * ms) / sampledMs) / 10 }));
    return { wallSeconds, sampledMs: Math.round(sampledMs), top };
  }
}

export function fmtProfile(p: ProfileSummary, n = 6): string {
  return `main thread over ${(p.sampledMs / 1000).toFixed(2)} s: ` + p.top.slice(0, n).map((f) => `${f.frame} ${f.percent}%`).join('; ');
}
