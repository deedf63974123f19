/**
 * Shared by the client-*.test.ts files: run the real cosi-fetch bin, compare
 * byte ranges of files without loading them whole, and craft broken archives.
 */
import { spawn } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO, sh } from './fixtures.js';

export const FETCH_CLI = join(REPO, 'dist', 'client', 'cli.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runFetch(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FETCH_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
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

/** True when [aOff, aOff+len) of a equals [bOff, bOff+len) of b. */
export async function sameBytes(a: string, aOff: number, b: string, bOff: number, len: number): Promise<boolean> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const CH = 4 << 20;
    const ba = Buffer.alloc(CH);
    const bb = Buffer.alloc(CH);
    for (let done = 0; done < len; ) {
      const n = Math.min(CH, len - done);
      const ra = await fa.read(ba, 0, n, aOff + done);
      const rb = await fb.read(bb, 0, n, bOff + done);
      if (ra.bytesRead !== n || rb.bytesRead !== n) return false;
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
      done += n;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
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

/** The last line of stderr that cosi-fetch wrote as an error. */
export function errorLine(r: CliResult): string {
  return r.stderr.split('\n').filter((l) => l.startsWith('cosi-fetch: error:')).join('\n');
}
