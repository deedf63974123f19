/** The servers under test: nginx (test/nginx.ts) and our cosi-server as a child process. */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { startNginx } from '../test/nginx.js';
import { SERVER_CLI } from './util.js';

export { startNginx };

/** nginx as deployed (a worker per core, no access log, sendfile): every comparison's baseline but one that reads the log. */
export const startDeployedNginx = (root: string) => startNginx(root, { deployed: true });

export interface CosiServer {
  url: string;
  pid: number;
  images: number;
  /** Spawn to the 'listening' line: includes node start-up and the initial index. */
  startSeconds: number;
  /** Peak RSS so far (VmHWM), in bytes. */
  peakRss(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** `workers`: --workers (1: one process, whose VmHWM peakRss reads; more: a cluster, peakRss sums the workers'). */
export async function startCosiServer(node: string, root: string, nodeArgs: string[] = [], workers = 1): Promise<CosiServer> {
  const t0 = process.hrtime.bigint();
  const child = spawn(node, [...nodeArgs, SERVER_CLI, '--root', root, '--host', '127.0.0.1', '--port', '0', '--no-watch', '--rescan', '0', '--quiet', '--workers', String(workers)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr.length < 65536 && (stderr += d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`cosi-server did not start within 60 s: ${stderr}`)), 60_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cosi-server exited ${code}: ${stderr.trim()}`));
    });
  });
  const startSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const info = JSON.parse(first) as { url: string; images: number };
  const pid = child.pid!;
  return {
    url: info.url,
    pid,
    images: info.images,
    startSeconds,
    async peakRss() {
      const hwm = async (p: number) => {
        const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${p}/status`, 'utf8').catch(() => ''));
        return m ? Number(m[1]) * 1024 : undefined;
      };
      if (workers === 1) return hwm(pid);
      const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean).map(Number);
      const all = await Promise.all([pid, ...kids].map(hwm));
      return all.reduce<number>((a, x) => a + (x ?? 0), 0);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
