/**
 * Real static servers for tests and benchmarks: nginx (strong ETags, single
 * and multiple ranges, If-Range) and python's http.server, a real server that
 * ignores Range. Each runs as a child process on 127.0.0.1 with its own
 * temporary prefix, and is gone (with its temp dir) after stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const NGINX = '/usr/sbin/nginx';

export interface RunningServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (bind 0, read it, close); callers retry on EADDRINUSE. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something answers HTTP on the port, or rejects after `ms`. */
async function waitForHttp(port: number, child: ChildProcess, ms: number, log: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before answering: ${await log()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port, method: 'HEAD', path: '/', timeout: 500, agent: false }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return;
    await sleep(25);
  }
  throw new Error(`server on port ${port} did not answer within ${ms} ms: ${await log()}`);
}

function stopper(child: ChildProcess, dir: string | undefined): () => Promise<void> {
  let stopped: Promise<void> | undefined;
  return () => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        // nginx exits at once on TERM; a bounded wait, then KILL, so a stuck child never hangs a test run.
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      if (dir) await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
}

/**
 * A main nginx.conf whose every path is in `dir`: one process, no daemon,
 * current user. `http` goes into the http block after the log and temp-file
 * paths; `logFormat`, when given, is the access log's format.
 */
export function nginxMainConf(dir: string, http: string, logFormat?: string | false, deployed = false): string {
  const accessLog =
    logFormat === false ? 'access_log off;' : logFormat === undefined ? `access_log ${dir}/access.log;` : `log_format cosi '${logFormat}';\n  access_log ${dir}/access.log cosi;`;
  // Deployed: a master and a worker per core, as Debian's nginx.conf runs (its workers keep our user,
  // so they can read the caller's private temp dirs; the directive is ignored when not root).
  const processes = deployed ? `master_process on;\nworker_processes auto;\nuser ${userInfo().username};` : 'master_process off;\nworker_processes 1;';
  return `daemon off;
${processes}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${deployed ? 1024 : 256}; }
http {
  ${accessLog}
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${http}
}
`;
}

/** Method, path, Range and If-Range of every request: tests check what the client actually sent. */
const ACCESS_LOG_FORMAT = '$request_method $uri "$http_range" "$http_if_range" $status $body_bytes_sent';

function staticSiteConf(dir: string, root: string, port: number, extra: string, deployed: boolean): string {
  return nginxMainConf(
    dir,
    `  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  etag on;
  keepalive_timeout 30s;
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    root ${JSON.stringify(root)};
${extra}
  }`,
    deployed ? false : ACCESS_LOG_FORMAT,
    deployed,
  );
}

/**
 * Serve `root` with the real nginx. `extraConfig` is pasted into the server
 * block (e.g. `location = /loop { return 302 /loop; }`). By default one process
 * with an access log (tests read it); `deployed`: as nginx is deployed (a worker
 * per core, no access log), the baseline the bench compares against.
 */
export async function startNginx(root: string, opts: { extraConfig?: string; deployed?: boolean } = {}): Promise<RunningServer & { accessLog(): Promise<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cosi-nginx-'));
  await mkdir(join(dir, 'tmp'));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    await writeFile(conf, staticSiteConf(dir, root, port, opts.extraConfig ?? '', opts.deployed ?? false));
    await writeFile(join(dir, 'error.log'), '');
    const child = spawn(NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: 'ignore' });
    const stop = stopper(child, dir);
    const log = () => readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    try {
      await waitForHttp(port, child, 5000, log);
      return {
        url: `http://127.0.0.1:${port}`,
        port,
        stop,
        accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
      };
    } catch (err) {
      // Another process may have taken the port between our probe and nginx's bind.
      const inUse = /Address already in use/.test(await log());
      await stopper(child, undefined)();
      if (!inUse || attempt >= 5) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
}

/** python3 -m http.server: a real static server that ignores Range (always 200, whole file). */
export async function startPlainHttpServer(root: string): Promise<RunningServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    let stderr = '';
    const child = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', root], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString();
    });
    const stop = stopper(child, undefined);
    try {
      await waitForHttp(port, child, 10_000, async () => stderr);
      return { url: `http://127.0.0.1:${port}`, port, stop };
    } catch (err) {
      await stop();
      if (!/Address already in use/.test(stderr) || attempt >= 5) throw err;
    }
  }
}
