/**
 * The progress bar as a person sees it: cosi-fetch runs in a real
 * pseudo-terminal (tmux, 60 and 120 columns, and resized from 120 to 60 and
 * to 40 mid-run) over a proxy that cuts transfers so retries print while the
 * bar is up. The screen is read with `tmux capture-pane` (rows as shown, so a
 * wrapped bar fails) and held to: one status line that fits the width in
 * force and shows total and network bytes; retry lines intact above it, each
 * once; at the end no bar remnant and the summary visible.
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

/** A screen as tmux shows it (no -J: a line the terminal wrapped is two rows), and the pane's width then. */
interface Screen {
  rows: string[];
  width: number;
}

interface Screens {
  /** Every distinct screen seen while the command ran. */
  during: Screen[];
  /** The last screen with wrapped lines joined (-J): retry and summary lines whole at any width. */
  final: string[];
  /** The last screen as shown. */
  finalRows: string[];
  code: number;
}

/** Runs cosi-fetch in a `cols`-wide tmux pane until it exits; optionally resizes once a bar is up. */
async function onScreen(cols: number, args: string[], resizeTo?: number): Promise<Screens> {
  const name = `s${sessions++}`;
  const cwd = await mkdtemp(join(work, 'run-'));
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = `${[process.execPath, FETCH_CLI, ...args].map(quote).join(' ')}; echo EXIT=$?; sleep 120`;
  await tmux('new-session', '-d', '-s', name, '-x', String(cols), '-y', '50', '-c', cwd, cmd);
  const during: Screen[] = [];
  const capture = async (...flags: string[]) => (await tmux('capture-pane', '-p', ...flags, '-t', name)).stdout.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  let width = cols;
  let resized = resizeTo === undefined;
  try {
    for (const deadline = Date.now() + 90_000; Date.now() < deadline; await sleep(50)) {
      const rows = await capture();
      const exit = rows.findIndex((l) => /^EXIT=\d+$/.test(l));
      if (exit >= 0) return { during, final: await capture('-J'), finalRows: rows, code: Number(rows[exit]!.slice(5)) };
      if (during.length === 0 || during.at(-1)!.width !== width || during.at(-1)!.rows.join('\n') !== rows.join('\n')) during.push({ rows, width });
      if (!resized && rows.some((l) => l.includes('%'))) {
        await tmux('resize-window', '-t', name, '-x', String(resizeTo));
        width = resizeTo!;
        resized = true;
      }
    }
    throw new Error(`cosi-fetch did not finish in the ${cols}-column pane`);
  } finally {
    await tmux('kill-session', '-t', name).catch(() => undefined);
  }
}

const isBar = (l: string) => /\[[#-]{3,}/.test(l) || /\d+%/.test(l);

function checkRun(s: Screens, summary: RegExp): void {
  assert.equal(s.code, 0, s.final.join('\n'));
  // At the end: the summary is there and the bar is gone (no remnant in any row, wrapped or not).
  assert.ok(s.final.some((l) => summary.test(l)), `summary missing:\n${s.final.join('\n')}`);
  assert.deepEqual(s.finalRows.filter(isBar), [], `bar left on screen:\n${s.finalRows.join('\n')}`);
  // Every retry line whole, and once: no more of them than connections the proxy cut (4).
  const retries = s.final.filter((l) => /, retry \d+\/6 in /.test(l));
  assert.ok(retries.length >= 1 && retries.length <= 4, `retries shown:\n${s.final.join('\n')}`);
  for (const l of retries) assert.match(l, /^cosi-fetch: [a-z][^[%]*, retry \d+\/6 in \d+(\.\d)?( ms| s) \(http:\/\/127\.0\.0\.1:\d+\/cosi\/three\.cosi\)$/);
  // While it ran: never more than one status line, never as wide as the pane then (a bar that wrapped
  // fills a row: a row of the pane's width fails), with the total and the network bytes.
  // Right after a resize the terminal shows the old line reflowed until the program redraws: from the
  // first screen at the new width whose bar fits, every screen must fit that width.
  const end = s.during.at(-1)?.width;
  let settled = true;
  let lastWidth = s.during[0]?.width;
  let fittingAtEnd = 0;
  const seen: string[] = [];
  for (const screen of s.during) {
    if (screen.width !== lastWidth) {
      settled = false;
      lastWidth = screen.width;
    }
    const bar = screen.rows.filter(isBar);
    if (!settled) {
      if (bar.length === 1 && bar[0]!.length < screen.width) settled = true;
      else continue;
    }
    assert.ok(bar.length <= 1, `status line duplicated or wrapped at ${screen.width} columns:\n${screen.rows.join('\n')}`);
    for (const l of bar) {
      assert.ok(l.length < screen.width, `${l.length} columns in a ${screen.width}-column pane: ${l}`);
      assert.match(l, /\d+% [\d.]+ (B|KiB|MiB)\/[\d.]+ MiB/);
      if (screen.width >= 100) seen.push(l);
      if (screen.width === end) fittingAtEnd++;
    }
  }
  assert.ok(fittingAtEnd > 0, `the bar was never seen at the final width (${end} columns)`);
  if (s.during[0]!.width >= 100) assert.ok(seen.some((l) => / net [\d.]+ (B|KiB|MiB)/.test(l)), 'network bytes shown at 100 columns or more');
}

test('a partition at 60 and at 120 columns: one fitting status line, retries above it, the summary last', async () => {
  for (const cols of [60, 120]) {
    const proxy = await cuttingProxy();
    try {
      const s = await onScreen(cols, ['-p', 'root', '-o', 'r.img', `${proxy.url}/cosi/three.cosi`]);
      checkRun(s, /^cosi-fetch: root: 4\.0 MiB written to r\.img$/);
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
      checkRun(s, /^cosi-fetch: disk of [\d.]+ MiB written to d\.img \(3 partitions\)$/);
      assert.equal(s.final.filter((l) => l.startsWith('cosi-fetch: disk of')).length, 1);
    } finally {
      await proxy.stop();
    }
  }
});

test('resized from 120 to 60 and to 40 columns mid-run: the bar fits the new width, no garbled rows, the summary last', async () => {
  for (const to of [60, 40]) {
    const proxy = await cuttingProxy();
    try {
      const s = await onScreen(120, ['-p', 'root', '-o', 'r.img', `${proxy.url}/cosi/three.cosi`], to);
      assert.equal(s.during.at(-1)!.width, to);
      checkRun(s, /^cosi-fetch: root: 4\.0 MiB written to r\.img$/);
    } finally {
      await proxy.stop();
    }
  }
});
