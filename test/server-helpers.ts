/**
 * Shared by the server tests: raw HTTP requests (node:http sends the path
 * exactly as given, unlike fetch, which normalises '..'), a multipart/
 * byteranges parser, and a temp catalog built from the real fixtures.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { packedDisk, REPO, SMALL, SMALL_4K } from './fixtures.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection ended before Content-Length bytes arrived. */
  complete: boolean;
}

export function http(
  base: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; agent?: false } = {},
): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const done = (complete: boolean) => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete });
        res.on('end', () => done(res.complete));
        res.on('error', () => done(false));
        res.on('aborted', () => done(false));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * One request written byte for byte (repeated or malformed headers that node:http would not
 * send), on a connection of its own; the answer parsed from what came back until the server
 * closed, or until `waitMs` passed on a connection it kept open.
 */
export function rawHttp(base: string, text: string, waitMs = 2000): Promise<Reply & { closed: boolean }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no response head in ${JSON.stringify(all.toString('latin1').slice(0, 200))}`));
      const [statusLine, ...lines] = all.toString('latin1', 0, end).split('\r\n');
      const headers: IncomingHttpHeaders = {};
      for (const l of lines) {
        const at = l.indexOf(':');
        headers[l.slice(0, at).trim().toLowerCase()] = l.slice(at + 1).trim();
      }
      const body = all.subarray(end + 4);
      const length = headers['content-length'] === undefined ? body.length : Number(headers['content-length']);
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, body, complete: body.length >= length, closed });
      s.destroy();
    };
    const timer = setTimeout(done, waitMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      closed = true;
      done();
    });
    s.on('error', reject);
    s.write(text);
  });
}

export function json(r: Reply): any {
  return JSON.parse(r.body.toString('utf8'));
}

export interface Part {
  contentType: string;
  contentRange: string;
  body: Buffer;
}

/** Parse multipart/byteranges strictly: each part's length comes from its Content-Range. */
export function parseMultipart(contentType: string, body: Buffer): Part[] {
  const m = /boundary=("?)([^";]+)\1/.exec(contentType);
  if (!m) throw new Error(`no boundary in ${contentType}`);
  const delim = `--${m[2]}`;
  const parts: Part[] = [];
  let at = 0;
  for (;;) {
    const start = body.indexOf(delim, at, 'latin1');
    if (start < 0) throw new Error('missing boundary');
    const after = start + delim.length;
    if (body.toString('latin1', after, after + 2) === '--') break;
    const headEnd = body.indexOf('\r\n\r\n', after, 'latin1');
    const headers = body.toString('latin1', after + 2, headEnd).split('\r\n');
    const get = (n: string) => headers.find((h) => h.toLowerCase().startsWith(n + ':'))!.slice(n.length + 1).trim();
    const contentRange = get('content-range');
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange)!;
    const len = Number(cr[2]) - Number(cr[1]) + 1;
    const data = body.subarray(headEnd + 4, headEnd + 4 + len);
    parts.push({ contentType: get('content-type'), contentRange, body: data });
    at = headEnd + 4 + len;
    if (body.toString('latin1', at, at + 2) !== '\r\n') throw new Error('part not followed by CRLF');
  }
  return parts;
}

export function run(cmd: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'buffer', maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}

export async function tempCatalog(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cosi-server-test-'));
  for (const [rel, src] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await copyFile(src, join(dir, rel));
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A root of real files, big enough that a transfer can be caught in the middle. */
export const SERVER_BIG = { name: 'serverbig', rootMiB: 64, rootFillMiB: 24 };

/** The archives most server tests serve: 512-byte and 4 KiB-sector disks, and a big one. */
export async function standardArchives() {
  const [s, s4, b] = await Promise.all([packedDisk(SMALL), packedDisk(SMALL_4K), packedDisk(SERVER_BIG)]);
  const [small, small4k, big] = await Promise.all([readFile(s.cosi), readFile(s4.cosi), readFile(b.cosi)]);
  return { smallPath: s.cosi, small4kPath: s4.cosi, bigPath: b.cosi, small, small4k, big };
}

/** Bytes of a local file, for comparing with what came over HTTP. */
export async function fileRange(path: string, start: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, start);
    return buf;
  } finally {
    await fh.close();
  }
}

const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');

/**
 * The real cosi-server CLI, as a deployment would run it (port 0, no periodic
 * rescan unless `args` say otherwise); resolves with its URL from the
 * listening line. `output()` is everything it wrote, stdout and stderr.
 */
export async function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess; output(): string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [SERVER_CLI, '--port', '0', '-q', '--rescan', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line) resolve(JSON.parse(line).url);
    });
    child.once('exit', (code) => reject(new Error(`cosi-server exited ${code}: ${err}`)));
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  return { url, child, output: () => out + err, stop };
}
