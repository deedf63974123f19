/**
 * The deployment files, checked without a Docker engine: docker-compose 1.29
 * and the compose-spec schema read docker-compose.yml; the Dockerfile is
 * checked against package.json and the compiled imports; nginx itself runs
 * deploy/nginx-cache.conf in front of a real origin; and the netboot
 * installer runs against disk image files, with a stub cosi-fetch and with
 * its curl + dd fallback over the real cosi-server's plan.txt and
 * ?decompress=1 endpoints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parseGpt } from '../shared/disk/gpt.js';
import { parseMetadata, type CosiMetadata } from '../shared/format/metadata.js';
import { extract, packedDisk, pythonTarOffsets, REPO, sh, SMALL, type PackedFixture } from './fixtures.js';
import { startServer } from '../server/server.js';
import { freePort, NGINX, nginxMainConf, startNginx } from './nginx.js';

const SYS_PATH = `${process.env['PATH'] ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`;
const COMPOSE = join(REPO, 'docker-compose.yml');
const NGINX_CONF = join(REPO, 'deploy', 'nginx-cache.conf');
const INSTALL = join(REPO, 'deploy', 'netboot', 'install.sh');

/** Absolute path of a command, or undefined (looks in sbin too). */
async function which(cmd: string): Promise<string | undefined> {
  for (const dir of SYS_PATH.split(':')) {
    const p = join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function runCmd(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, timeout: opts.timeout ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'cosi-deploy-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * docker-compose.yml as JSON, through PyYAML: Debian's python3-yaml comes
 * with docker-compose and belongs to /usr/bin/python3 (a pyenv python3 on
 * PATH may not have it).
 */
async function composeJson(): Promise<Record<string, any>> {
  const py = 'import yaml, json, sys\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))';
  return JSON.parse(await sh(existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-c', py, COMPOSE]));
}

/** The compose-spec schema docker-compose 1.29 validates with, from its Debian package. */
async function composeSchemaPath(): Promise<string | undefined> {
  const r = await runCmd('dpkg', ['-L', 'docker-compose'], { env: { PATH: SYS_PATH } });
  const p = r.code === 0 ? r.stdout.split('\n').find((l) => l.endsWith('/compose_spec.json')) : undefined;
  return p && existsSync(p) ? p : undefined;
}

// ---------------------------------------------------------------- compose

test('docker-compose 1.29 accepts docker-compose.yml', async (t) => {
  const bin = await which('docker-compose');
  if (!bin) return t.skip('docker-compose is not installed (apt-get install docker-compose)');
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: SYS_PATH };
  delete env['COSI_IMAGE'];
  delete env['COSI_CATALOG'];
  const r = await runCmd(bin, ['-f', COMPOSE, 'config', '-q'], { env, cwd: REPO });
  assert.equal(r.code, 0, `docker-compose config -q failed: ${r.stderr}`);
  // The tools profile keeps `fetch` out of `up` but it is still a valid service.
  const services = await runCmd(bin, ['-f', COMPOSE, '--profile', 'tools', 'config', '--services'], { env, cwd: REPO });
  assert.equal(services.code, 0, services.stderr);
  assert.deepEqual(services.stdout.trim().split('\n').sort(), ['cache', 'cosi-server', 'fetch']);
  // A broken file must be refused, or the check above proves nothing.
  await withTmp(async (dir) => {
    const bad = join(dir, 'docker-compose.yml');
    await writeFile(bad, (await readFile(COMPOSE, 'utf8')).replace('  cache:\n', '  cache:\n    no_such_key: 1\n'));
    const r2 = await runCmd(bin, ['-f', bad, 'config', '-q'], { env, cwd: REPO });
    assert.notEqual(r2.code, 0);
  });
});

test('the compose-spec schema accepts docker-compose.yml, and it wires the services as documented', async (t) => {
  const schemaPath = await composeSchemaPath();
  if (!schemaPath) return t.skip('compose_spec.json not found: install docker-compose (Debian, 1.29)');
  const schema = JSON.parse(await readFile(schemaPath, 'utf8'));
  // The 1.29 schema names subschemas with draft-04 `id` (Ajv 8 refuses it) and a
  // `$schema` URI spelled with a trailing '#'; both are annotations only here.
  const strip = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(strip);
    else if (n && typeof n === 'object') {
      const o = n as Record<string, unknown>;
      if (typeof o['id'] === 'string') delete o['id'];
      Object.values(o).forEach(strip);
    }
  };
  strip(schema);
  delete schema.$schema;
  const ajv = new Ajv2019({ strict: false, validateFormats: false, allErrors: true });
  const validate = ajv.compile(schema);
  const doc = await composeJson();
  assert.ok(validate(doc), JSON.stringify(validate.errors, null, 2));
  assert.equal(validate({ services: { x: { image: 'a', bogus: 1 } } }), false, 'the schema must reject unknown keys');

  const s = doc['services'];
  assert.deepEqual(Object.keys(s).sort(), ['cache', 'cosi-server', 'fetch']);
  const server = s['cosi-server'];
  assert.ok(server.build, 'cosi-server is built from the Dockerfile');
  assert.ok(server.volumes.some((v: string) => /:\/catalog:ro$/.test(v)), 'catalog mounted read-only');
  assert.equal(server.healthcheck.test[0], 'CMD');
  assert.match(server.healthcheck.test.join(' '), /\/healthz/);
  const cache = s['cache'];
  assert.equal(cache.image, 'nginx:stable');
  assert.deepEqual(cache.depends_on, { 'cosi-server': { condition: 'service_healthy' } });
  const conf = cache.volumes.find((v: any) => v.source === './deploy/nginx-cache.conf');
  assert.ok(conf && conf.read_only && conf.target === '/etc/nginx/conf.d/default.conf', 'nginx config mounted from deploy/');
  const fetch = s['fetch'];
  assert.deepEqual(fetch.profiles, ['tools']);
  assert.deepEqual(fetch.command.slice(0, 5), ['cosi-fetch', '--partition', 'root', '-o', '/out/root.img']);
  assert.match(fetch.command[5], /^http:\/\/cache:8080\/cosi\/.+\.cosi$/, 'fetch goes through the cache');
  assert.ok(fetch.volumes.some((v: any) => v.target === '/out'));
});

// ---------------------------------------------------------------- Dockerfile

test('Dockerfile: two node:22-slim stages, non-root, commands match package.json, runtime imports only dependencies', async () => {
  const df = await readFile(join(REPO, 'Dockerfile'), 'utf8');
  // Join continuation lines so each instruction is one line.
  const lines = df.replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'));
  const instr = (name: string) => lines.filter((l) => l.toUpperCase().startsWith(`${name} `));
  assert.deepEqual(instr('FROM').map((l) => l.split(/\s+/)[1]), ['node:22-slim', 'node:22-slim']);
  const users = instr('USER').map((l) => l.split(/\s+/)[1]);
  assert.ok(users.length > 0 && users.at(-1) !== 'root' && users.at(-1) !== '0', 'runs as a non-root user');
  assert.deepEqual(instr('EXPOSE'), ['EXPOSE 8080']);
  assert.match(instr('HEALTHCHECK').join(''), /CMD \["node", "-e", .*\/healthz/);
  assert.equal(instr('CMD').at(-1), 'CMD ["cosi-server", "--root", "/catalog", "--host", "0.0.0.0", "--port", "8080"]');
  assert.match(df, /npm ci --omit=dev --ignore-scripts/);
  // With scripts off, the postinstall patch (the fzstd fix) must still be applied in the runtime image.
  const manifest = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8'));
  if (manifest.scripts?.postinstall?.includes('patch-package')) assert.match(df, /COPY patches \.\/patches[\s\S]*patch-package/);
  assert.match(df, /apt-get install -y --no-install-recommends e2fsprogs/);

  // The wrappers point at the same files as package.json's bin.
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8'));
  const pairs = /for pair in ([^;]+);/.exec(df)?.[1]?.trim().split(/\s+/) ?? [];
  const wrapped = Object.fromEntries(pairs.map((p) => p.split(':') as [string, string]));
  assert.deepEqual(wrapped, pkg.bin);
  // What the runtime stage copies out of dist/ holds every command.
  const copied = instr('COPY').filter((l) => l.includes('--from=build')).map((l) => l.split(/\s+/)[3]!.replace(/^\.\//, ''));
  for (const target of Object.values(pkg.bin) as string[]) {
    assert.ok(copied.some((d) => target.startsWith(`${d}/`)), `${target} is copied into the runtime image`);
  }

  // Build-stage sources exist and are not hidden by .dockerignore.
  const ignored = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const buildCopies = instr('COPY').filter((l) => !l.includes('--from=')).flatMap((l) => l.split(/\s+/).slice(1, -1));
  for (const src of buildCopies) {
    assert.ok(existsSync(join(REPO, src)), `COPY source ${src} exists`);
    assert.ok(!ignored.includes(src), `${src} is not excluded by .dockerignore`);
  }
  assert.ok(ignored.includes('node_modules') && ignored.includes('dist'));

  // `npm ci --omit=dev` leaves only dependencies: no compiled runtime file may import anything else.
  const allowed = new Set(Object.keys(pkg.dependencies));
  const builtins = new Set(builtinModules);
  const bad: string[] = [];
  for (const sub of ['shared', 'server', 'client']) {
    const dir = join(REPO, 'dist', sub);
    if (!existsSync(dir)) continue;
    for (const f of await readdir(dir, { recursive: true })) {
      if (!f.endsWith('.js')) continue;
      const js = await readFile(join(dir, f), 'utf8');
      for (const m of js.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)) {
        const spec = m[1] ?? m[2] ?? m[3]!;
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!allowed.has(name)) bad.push(`${sub}/${f}: ${spec}`);
      }
    }
  }
  assert.deepEqual(bad, [], 'runtime code imports packages that are not production dependencies');
});

// ---------------------------------------------------------------- nginx cache

/**
 * deploy/nginx-cache.conf made runnable here: the compose service name and
 * the container's cache path and port replaced, wrapped in a main config
 * whose every path is in `dir`. One process, no daemon, current user.
 */
async function cacheConfig(dir: string, origin: string, port: number): Promise<string> {
  const site = (await readFile(NGINX_CONF, 'utf8'))
    .replaceAll('cosi-server:8080', origin)
    .replaceAll('/var/cache/nginx/cosi', join(dir, 'cache'))
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};`);
  assert.ok(site.includes(`listen 127.0.0.1:${port};`) && site.includes(origin), 'the substitutions found their targets');
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await writeFile(join(dir, 'site.conf'), site);
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxMainConf(dir, `  include ${dir}/site.conf;`));
  return conf;
}

test('nginx -t accepts deploy/nginx-cache.conf (the slice module is built in)', async (t) => {
  if (!existsSync(NGINX)) return t.skip('nginx is not installed (nginx-light)');
  const v = await runCmd(NGINX, ['-V']);
  assert.match(v.stderr, /--with-http_slice_module/, 'this nginx lacks the slice module the config needs');
  await withTmp(async (dir) => {
    const conf = await cacheConfig(dir, '127.0.0.1:9', 8080);
    const r = await runCmd(NGINX, ['-t', '-p', dir, '-e', join(dir, 'error.log'), '-c', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /test is successful/);
  });
});

async function startCache(dir: string, origin: string): Promise<{ url: string; stop(): Promise<void> }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = await cacheConfig(dir, origin, port);
    const child = spawn(NGINX, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { stdio: 'ignore' });
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
    };
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) break;
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        async (r) => (await r.arrayBuffer(), true),
        () => false,
      );
      if (ok) return { url: `http://127.0.0.1:${port}`, stop };
      await sleep(25);
    }
    await stop();
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    if (!/Address already in use/.test(log) || attempt >= 5) throw new Error(`cache nginx did not start: ${log}`);
  }
}

async function fileRange(path: string, start: number, end: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(end - start + 1);
    await fh.read(buf, 0, buf.length, start);
    return buf;
  } finally {
    await fh.close();
  }
}

test('the nginx cache serves ranges by 1 MiB slices from a real origin and hits on repeat', async (t) => {
  if (!existsSync(NGINX)) return t.skip('nginx is not installed (nginx-light)');
  const fx = await packedDisk(SMALL);
  await withTmp(async (dir) => {
    // The origin: a static nginx laid out like cosi-server's URL space.
    const www = join(dir, 'www');
    await mkdir(join(www, 'cosi'), { recursive: true });
    const cosi = join(www, 'cosi', 'small.cosi');
    await copyFile(fx.cosi, cosi);
    const size = (await stat(cosi)).size;
    // The fixture compresses to a few KiB; a blob of 3.5 MiB spans four slices.
    const blobBytes = randomBytes(3.5 * (1 << 20));
    const blobHex = createHash('sha384').update(blobBytes).digest('hex');
    const blob = join(www, 'v1', 'blobs', 'sha384', blobHex);
    await mkdir(join(www, 'v1', 'blobs', 'sha384'), { recursive: true });
    await writeFile(blob, blobBytes);
    await writeFile(join(www, 'healthz'), 'ok\n');

    const origin = await startNginx(www);
    const cacheDir = join(dir, 'cache-nginx');
    await mkdir(cacheDir);
    const cache = await startCache(cacheDir, `127.0.0.1:${origin.port}`);
    try {
      const get = async (path: string, range?: string) => {
        const r = await fetch(`${cache.url}${path}`, { headers: range ? { range } : {} });
        return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
      };
      const status = (r: { headers: Headers }) => r.headers.get('x-cache-status');

      // A COSI archive by range: right bytes, the origin's strong ETag, then a HIT.
      const originEtag = (await fetch(`${origin.url}/cosi/small.cosi`, { method: 'HEAD' })).headers.get('etag');
      assert.match(originEtag ?? '', /^"[^"]+"$/, 'the origin sends a strong ETag');
      const first = await get('/cosi/small.cosi', 'bytes=1000-9999');
      assert.equal(first.status, 206);
      assert.equal(first.headers.get('content-range'), `bytes 1000-9999/${size}`);
      assert.equal(first.headers.get('etag'), originEtag, 'the cache keeps the origin ETag');
      assert.equal(status(first), 'MISS');
      assert.ok(first.body.equals(await fileRange(cosi, 1000, 9999)), 'range bytes through the cache');
      const again = await get('/cosi/small.cosi', 'bytes=1000-9999');
      assert.equal(status(again), 'HIT');
      assert.ok(again.body.equals(first.body));
      const tail = await get('/cosi/small.cosi', 'bytes=-700');
      assert.equal(tail.status, 206);
      assert.equal(status(tail), 'HIT', 'any range of a cached slice is a HIT');
      assert.ok(tail.body.equals(await fileRange(cosi, size - 700, size - 1)));

      // A range straddling the first slice boundary: two slices fetched, joined, cached.
      const [a, b] = [(1 << 20) - 1000, (1 << 20) + 2999];
      const path = `/v1/blobs/sha384/${blobHex}`;
      const b1 = await get(path, `bytes=${a}-${b}`);
      assert.equal(b1.status, 206);
      assert.equal(b1.headers.get('content-range'), `bytes ${a}-${b}/${blobBytes.length}`);
      assert.equal(status(b1), 'MISS');
      assert.ok(b1.body.equals(blobBytes.subarray(a, b + 1)));
      const b2 = await get(path, `bytes=${a}-${b}`);
      assert.equal(status(b2), 'HIT');
      assert.ok(b2.body.equals(b1.body));
      const inner = await get(path, `bytes=${a + 10}-${a + 1500}`);
      assert.equal(status(inner), 'HIT');
      assert.ok(inner.body.equals(blobBytes.subarray(a + 10, a + 1501)));
      const last = await get(path, 'bytes=3500000-');
      assert.equal(status(last), 'MISS', 'slice 3 was never fetched');
      assert.ok(last.body.equals(blobBytes.subarray(3_500_000)));

      // The decompressing endpoint is neither sliced nor cached.
      const dec = await get('/v1/images/small/partitions/2?decompress=1');
      assert.equal(status(dec), 'BYPASS');

      // The origin saw each slice once: 1 for the archive, 3 for the blob.
      const log = (await origin.accessLog()).split('\n');
      assert.equal(log.filter((l) => l.includes('GET /cosi/small.cosi')).length, 1);
      assert.equal(log.filter((l) => l.includes(`GET ${path}`)).length, 3, log.join('\n'));
    } finally {
      await cache.stop();
      await origin.stop();
    }
  });
});

// ---------------------------------------------------------------- netboot

async function runInstall(dir: string, cmdline: string, path: string): Promise<Run> {
  const cmdlineFile = join(dir, 'cmdline');
  await writeFile(cmdlineFile, `${cmdline}\n`);
  // dash: the script must not lean on bash.
  return runCmd('/bin/sh', [INSTALL], { env: { PATH: path, CMDLINE_FILE: cmdlineFile, TMPDIR: dir, HOME: dir }, timeout: 30_000 });
}

test('install.sh hands the kernel command line to cosi-fetch --disk', async () => {
  await withTmp(async (dir) => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    const argsFile = join(dir, 'args');
    // The stub records one argument per line and exits as told.
    await writeFile(join(bin, 'cosi-fetch'), `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > ${argsFile}\nexit \${STUB_EXIT:-0}\n`);
    await chmod(join(bin, 'cosi-fetch'), 0o755);
    const path = `${bin}:/usr/bin:/bin`;
    const disk = join(dir, 'x', 'disk.img');
    const pin = 'AB'.repeat(48);
    const url = 'http://192.0.2.1:8080/cosi/os/v1.cosi?token=a*b';
    const r = await runInstall(
      dir,
      `BOOT_IMAGE=/vmlinuz console=ttyS0 cosi.url=${url} cosi.disk=${disk} cosi.sha384=${pin} cosi.mirror=http://m1/x.cosi cosi.mirror=http://m2/x.cosi quiet`,
      path,
    );
    assert.equal(r.code, 0, r.stderr);
    const args = (await readFile(argsFile, 'utf8')).trimEnd().split('\n');
    assert.deepEqual(args, ['--disk', '-o', disk, '--metadata-sha384', pin.toLowerCase(), '--mirror', 'http://m1/x.cosi', '--mirror', 'http://m2/x.cosi', url]);

    // Without a pin, no --metadata-sha384.
    const r2 = await runInstall(dir, `cosi.disk=/dev/vda cosi.url=http://h/cosi/a.cosi`, path);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual((await readFile(argsFile, 'utf8')).trimEnd().split('\n'), ['--disk', '-o', '/dev/vda', 'http://h/cosi/a.cosi']);

    // cosi-fetch's exit status is the script's (exec).
    const failing = await runCmd('/bin/sh', [INSTALL], { env: { PATH: path, CMDLINE_FILE: join(dir, 'cmdline'), STUB_EXIT: '4' } });
    assert.equal(failing.code, 4);

    // Usage errors before anything runs.
    await rm(argsFile);
    for (const [line, msg] of [
      ['cosi.url=http://h/cosi/a.cosi', /no cosi\.disk=/],
      ['cosi.disk=/dev/vda', /no cosi\.url=/],
      ['cosi.url=http://h/cosi/a.cosi cosi.disk=/dev/vda cosi.sha384=xyz', /96 hex digits/],
      [`cosi.url=http://h/cosi/a.cosi cosi.disk=/dev/vda cosi.sha384=${'a'.repeat(95)}`, /96 hex digits/],
    ] as const) {
      const u = await runInstall(dir, line, path);
      assert.equal(u.code, 2, line);
      assert.match(u.stderr, msg);
    }
    assert.equal(existsSync(argsFile), false, 'cosi-fetch never ran on a usage error');

    // The iPXE template's kernel line, filled in, is a command line the script understands.
    const ipxe = await readFile(join(REPO, 'deploy', 'netboot', 'boot.ipxe.example'), 'utf8');
    assert.match(ipxe, /^#!ipxe\n/);
    const vars: Record<string, string> = { server: 'http://192.0.2.10:8080', image: 'myos/3.0', disk: '/dev/nvme0n1', pin: 'c'.repeat(96) };
    for (const name of Object.keys(vars)) assert.match(ipxe, new RegExp(`^set ${name} `, 'm'), `the template sets ${name}`);
    const kernel = /^kernel (\S+) (.*?)(?: \|\| goto failed)?$/m.exec(ipxe);
    assert.ok(kernel, 'a kernel line');
    const cmdline = kernel[2]!.replace(/\$\{(\w+)\}/g, (_, v: string) => vars[v] ?? assert.fail(`unknown variable ${v}`));
    const fromIpxe = await runInstall(dir, `BOOT_IMAGE=vmlinuz ${cmdline}`, path);
    assert.equal(fromIpxe.code, 0, fromIpxe.stderr);
    assert.deepEqual((await readFile(argsFile, 'utf8')).trimEnd().split('\n'), [
      '--disk', '-o', '/dev/nvme0n1', '--metadata-sha384', 'c'.repeat(96), 'http://192.0.2.10:8080/cosi/myos/3.0.cosi',
    ]);
    assert.match(ipxe, /^initrd .*\/initrd\.img/m);
  });
});

interface PlanServer {
  url: string;
  /** Path and query of every request, in the order they completed. */
  requests: string[];
  stop(): Promise<void>;
}

/**
 * The real cosi-server over a catalog holding the fixture as
 * fixtures/small.cosi: install.sh reads its plan.txt and its ?decompress=1
 * partition endpoints. `corruptPartition` flips bytes inside that
 * partition's compressed image in the catalog copy, so the server's SHA-384
 * check fails and it cuts the download, as it does for bit rot.
 */
async function startPlanServer(fx: PackedFixture, work: string, opts: { corruptPartition?: number } = {}): Promise<PlanServer> {
  const root = join(work, 'catalog');
  await mkdir(join(root, 'fixtures'), { recursive: true });
  const cosi = join(root, 'fixtures', 'small.cosi');
  await copyFile(fx.cosi, cosi);
  if (opts.corruptPartition !== undefined) {
    await extract(fx.cosi, join(work, 'x'));
    const meta: CosiMetadata = parseMetadata(await readFile(join(work, 'x', 'metadata.json')));
    const path = meta.disk!.gptRegions!.find((r) => r.number === opts.corruptPartition)!.image.path;
    const entry = (await pythonTarOffsets(fx.cosi)).find((e) => e.name === path)!;
    const fh = await open(cosi, 'r+');
    try {
      await fh.write(Buffer.from('CORRUPTED'), 0, 9, entry.offsetData + Math.floor(entry.size / 2));
    } finally {
      await fh.close();
    }
  }
  const requests: string[] = [];
  const srv = await startServer({
    root,
    port: 0,
    rescanSeconds: 0,
    watch: false,
    log: (line) => {
      if (typeof line['url'] === 'string') requests.push(line['url']);
    },
  });
  return { url: srv.url, requests, stop: () => srv.close(500) };
}

/** A PATH holding exactly the tools the fallback documents, and no cosi-fetch. */
async function fallbackPath(dir: string): Promise<string> {
  const bin = join(dir, 'fallback-bin');
  await mkdir(bin);
  for (const tool of ['cat', 'tr', 'sed', 'grep', 'curl', 'dd', 'mkdir', 'rm', 'tail', 'stat', 'truncate', 'sha384sum', 'sgdisk', 'sync']) {
    const p = await which(tool);
    assert.ok(p, `${tool} is installed`);
    await symlink(p, join(bin, tool));
  }
  return bin;
}

test('install.sh fallback: curl + dd over ?decompress=1 writes a disk that matches the source and passes sgdisk -v', async (t) => {
  if (!(await which('sgdisk')) || !(await which('curl'))) return t.skip('needs sgdisk and curl');
  const fx = await packedDisk(SMALL);
  await withTmp(async (dir) => {
    const srv = await startPlanServer(fx, join(dir, 'srv'));
    try {
      const path = await fallbackPath(dir);
      await extract(fx.cosi, join(dir, 'src'));
      const meta = parseMetadata(await readFile(join(dir, 'src', 'metadata.json')));
      const pin = createHash('sha384').update(await readFile(join(dir, 'src', 'metadata.json'))).digest('hex');
      const disk = join(dir, 'x', 'disk.img');
      await mkdir(join(dir, 'x'));
      const r = await runInstall(dir, `console=ttyS0 cosi.url=${srv.url}/cosi/fixtures/small.cosi cosi.disk=${disk} cosi.sha384=${pin}`, path);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await stat(disk)).size, meta.disk!.size);

      // Every region the image defines is byte-identical to the source disk.
      const gptImage = parseGpt(await fileRange(fx.disk, 0, 64 * 1024 - 1), { lbaSize: meta.disk!.lbaSize });
      for (const region of meta.disk!.gptRegions!) {
        const off = region.type === 'primary-gpt' ? 0 : gptImage.partitions.find((p) => p.number === region.number)!.offset;
        const n = region.image.uncompressedSize;
        const got = createHash('sha256').update(await fileRange(disk, off, off + n - 1)).digest('hex');
        const want = createHash('sha256').update(await fileRange(fx.disk, off, off + n - 1)).digest('hex');
        assert.equal(got, want, `${region.type} ${region.number ?? ''} at ${off}`);
      }
      const v = await runCmd('sgdisk', ['-v', disk], { env: { PATH: SYS_PATH } });
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /No problems found/);

      // The primary GPT came last, after every partition; metadata only because of the pin.
      const order = srv.requests.filter((q) => q.includes('decompress=1'));
      assert.equal(order.length, meta.disk!.gptRegions!.length);
      assert.equal(order.at(-1), '/v1/images/fixtures/small/partitions/primary-gpt?decompress=1');
      assert.deepEqual(srv.requests.slice(0, 2), ['/v1/images/fixtures/small/plan.txt', '/v1/images/fixtures/small/metadata.json']);

      // A pin for other metadata stops the install before any region is written.
      srv.requests.length = 0;
      const other = await runInstall(dir, `cosi.url=${srv.url}/cosi/fixtures/small.cosi cosi.disk=${join(dir, 'x', 'other.img')} cosi.sha384=${'0'.repeat(96)}`, path);
      assert.equal(other.code, 4, other.stderr);
      assert.match(other.stderr, /not the pinned/);
      assert.equal(srv.requests.filter((q) => q.includes('decompress')).length, 0);
      assert.equal(existsSync(join(dir, 'x', 'other.img')), false);
      assert.deepEqual(await readdir(dir).then((l) => l.filter((n) => n.startsWith('cosi-install.'))), [], 'temp dir removed');
    } finally {
      await srv.stop();
    }
  });
});

test('install.sh fallback: a download cut short fails the install and the primary GPT is never written', async (t) => {
  if (!(await which('sgdisk')) || !(await which('curl'))) return t.skip('needs sgdisk and curl');
  const fx = await packedDisk(SMALL);
  await withTmp(async (dir) => {
    const srv = await startPlanServer(fx, join(dir, 'srv'), { corruptPartition: 2 });
    try {
      const path = await fallbackPath(dir);
      const disk = join(dir, 'disk.img');
      const r = await runInstall(dir, `cosi.url=${srv.url}/cosi/fixtures/small.cosi cosi.disk=${disk}`, path);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /partition 2: .*cut short|download of partition 2 failed/);
      // No GPT signature at LBA 1: the disk does not look installed.
      const lba1 = await fileRange(disk, 512, 519);
      assert.notEqual(lba1.toString('latin1'), 'EFI PART');
      assert.equal(srv.requests.some((q) => q.includes('/partitions/primary-gpt')), false, 'primary GPT not fetched');
    } finally {
      await srv.stop();
    }
  });
});
