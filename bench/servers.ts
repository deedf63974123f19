/** The servers under test: nginx (test/nginx.ts) and our cosi-server as a child process. */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { startNginx } from '../test/nginx.js';
import { SERVER_CLI } from './util.js';

export { startNginx };

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

export async function startCosiServer(node: string, root: string, nodeArgs: string[] = []): Promise<CosiServer> {
  const t0 = process.hrtime.bigint();
  const child = spawn(node, [...nodeArgs, SERVER_CLI, '--root', root, '--host', '127.0.0.1', '--port', '0', '--no-watch', '--rescan', '0', '--quiet'], {
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
      const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const m = /VmHWM:\s+(\d+) kB/.exec(s);
      return m ? Number(m[1]) * 1024 : undefined;
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
