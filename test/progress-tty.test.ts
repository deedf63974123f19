/**
 * The progress bar as a person sees it: cosi-fetch runs in a real
 * pseudo-terminal (tmux, 60 and 120 columns, and resized mid-run) over a
 * proxy that cuts transfers so retries print while the bar is up. The
 * screen is read with `tmux capture-pane` and held to: one status line that
 * fits the width and shows total and network bytes; retry lines intact above
 * it, each once; at the end no bar remnant and the summary visible.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { FETCH_CLI, packThreeBig, startCatalogServer } from './client-helpers.js';

const exec = promisify(execFile);
/** Our own tmux server: other tmux sessions on the machine are never touched. */
const SOCKET = `cosi-progress-${process.pid}`;
const tmux = (...args: string[]) => exec('tmux', ['-L', SOCKET, ...args], { timeout: 10_000 });

let work: string;
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let sessions = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-progress-'));
  await mkdir(join(work, 'build'));
  const three = await packThreeBig(join(work, 'build'));
  srv = await startCatalogServer({ 'three.cosi': three.cosi });
});
after(async () => {
  await tmux('kill-server').catch(() => undefined);
  await srv.stop();
  await rm(work, { recursive: true, force: true });
});

/** Cuts the first transfers after the opening read: a few retries while the bar is drawn. */
function cuttingProxy(): Promise<FaultProxy> {
  // Connections are kept alive: the first is cut once the opening reads are done, so the transfers need new ones.
  return startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => (i === 0 ? { kind: 'cut', afterBytes: 70_000 } : i <= 3 ? { kind: 'cut', afterBytes: 300_000 } : { kind: 'pass' }));
}

interface Screens {
  /** Every distinct screen seen while the command ran (wrapped lines joined). */
  during: string[][];
  final: string[];
  code: number;
}

/** Runs cosi-fetch in a `cols`-wide tmux pane until it exits; optionally resizes once a bar is up. */
async function onScreen(cols: number, args: string[], resizeTo?: number): Promise<Screens> {
  const name = `s${sessions++}`;
  const cwd = await mkdtemp(join(work, 'run-'));
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = `${[process.execPath, FETCH_CLI, ...args].map(quote).join(' ')}; echo EXIT=$?; sleep 120`;
  await tmux('new-session', '-d', '-s', name, '-x', String(cols), '-y', '50', '-c', cwd, cmd);
  const during: string[][] = [];
  let resized = resizeTo === undefined;
  try {
    for (const deadline = Date.now() + 90_000; Date.now() < deadline; await sleep(50)) {
      const rows = (await tmux('capture-pane', '-p', '-J', '-t', name)).stdout.split('\n').map((l) => l.trimEnd()).filter(Boolean);
      const exit = rows.findIndex((l) => /^EXIT=\d+$/.test(l));
      if (exit >= 0) return { during, final: rows, code: Number(rows[exit]!.slice(5)) };
      if (during.length === 0 || during.at(-1)!.join('\n') !== rows.join('\n')) during.push(rows);
      if (!resized && rows.some((l) => l.includes('%'))) {
        await tmux('resize-window', '-t', name, '-x', String(resizeTo));
        resized = true;
      }
    }
    throw new Error(`cosi-fetch did not finish in the ${cols}-column pane`);
  } finally {
    await tmux('kill-session', '-t', name).catch(() => undefined);
  }
}

const isBar = (l: string) => /\[[#-]{3,}/.test(l) || /\d+%/.test(l);

function checkRun(s: Screens, cols: number, summary: RegExp, widthDuringRun = cols): void {
  assert.equal(s.code, 0, s.final.join('\n'));
  // At the end: the summary is there and the bar is gone.
  assert.ok(s.final.some((l) => summary.test(l)), `summary missing:\n${s.final.join('\n')}`);
  assert.deepEqual(s.final.filter(isBar), [], `bar left on screen:\n${s.final.join('\n')}`);
  // Every retry line whole, and once: no more of them than connections the proxy cut (4).
  const retries = s.final.filter((l) => /, retry \d+\/6 in /.test(l));
  assert.ok(retries.length >= 1 && retries.length <= 4, `retries shown:\n${s.final.join('\n')}`);
  for (const l of retries) assert.match(l, /^cosi-fetch: [a-z][^[%]*, retry \d+\/6 in \d+(\.\d)?( ms| s) \(http:\/\/127\.0\.0\.1:\d+\/cosi\/three\.cosi\)$/);
  // While it ran: never more than one status line, never wider than the pane, with the total and the network bytes.
  const bars = s.during.map((rows) => rows.filter(isBar));
  assert.ok(bars.some((b) => b.length === 1), 'the bar was never seen');
  for (const b of bars) {
    assert.ok(b.length <= 1, `status line duplicated:\n${b.join('\n')}`);
    for (const l of b) {
      assert.ok(l.length < widthDuringRun || l.length < cols, `${l.length} columns: ${l}`);
      assert.match(l, /\d+% [\d.]+ (B|KiB|MiB)\/[\d.]+ MiB/);
    }
  }
  if (cols >= 100) assert.ok(bars.flat().some((l) => / net [\d.]+ (B|KiB|MiB)/.test(l)), 'network bytes shown at 120 columns');
}

test('a partition at 60 and at 120 columns: one fitting status line, retries above it, the summary last', async () => {
  for (const cols of [60, 120]) {
    const proxy = await cuttingProxy();
    try {
      const s = await onScreen(cols, ['-p', 'root', '-o', 'r.img', `${proxy.url}/cosi/three.cosi`]);
      checkRun(s, cols, /^cosi-fetch: root: 4\.0 MiB written to r\.img$/);
    } finally {
      await proxy.stop();
    }
  }
});

test('--disk at 60 and at 120 columns: one status line for every partition, no duplicated lines', async () => {
  for (const cols of [60, 120]) {
    const proxy = await cuttingProxy();
    try {
      const s = await onScreen(cols, ['--disk', '-o', 'd.img', `${proxy.url}/cosi/three.cosi`]);
      checkRun(s, cols, /^cosi-fetch: disk of [\d.]+ MiB written to d\.img \(3 partitions\)$/);
      assert.equal(s.final.filter((l) => l.startsWith('cosi-fetch: disk of')).length, 1);
    } finally {
      await proxy.stop();
    }
  }
});

test('resized from 120 to 60 columns mid-run: no garbled rows, the summary last', async () => {
  const proxy = await cuttingProxy();
  try {
    const s = await onScreen(120, ['-p', 'root', '-o', 'r.img', `${proxy.url}/cosi/three.cosi`], 60);
    checkRun(s, 120, /^cosi-fetch: root: 4\.0 MiB written to r\.img$/);
  } finally {
    await proxy.stop();
  }
});
