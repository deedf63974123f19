/**
 * README's set-up and first steps, as a new user runs them: `npm install -g .` puts the three
 * commands on PATH (here under a temporary prefix), the package `npm pack` makes holds what they
 * need, and the Quick start and "Publishing your own image" blocks run as written, in order, in one
 * shell that finds the commands by name. The blocks are read from README.md, so they cannot drift.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packedDisk, REPO, sh, SMALL } from './fixtures.js';
import { freePort } from './nginx.js';

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  bundleDependencies?: string[];
};

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The npm running this suite (`npm test` sets npm_execpath), else the one on PATH. */
function npm(args: string[], cwd: string): Promise<Run> {
  const cli = process.env['npm_execpath'];
  const [file, pre] = cli && /\.c?js$/.test(cli) ? [process.execPath, [cli]] : ['npm', []];
  return new Promise((resolve) => {
    execFile(file, [...pre, ...args], { cwd, timeout: 180_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Run a shell script in its own process group, so a server it leaves behind can be stopped. */
function bash(script: string, opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b) => (stdout += b));
    child.stderr!.on('data', (b) => (stderr += b));
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      stderr += `\n(test: killed after ${opts.timeoutMs} ms)`;
      killGroup();
    }, opts.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      killGroup(); // whatever the script started and left running
      resolve({ code, stdout, stderr });
    });
  });
}

/** The ```sh blocks of one `## ` section of README.md, in order. */
function shellBlocks(markdown: string, heading: string): string[] {
  const at = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(at >= 0, `README.md has a "## ${heading}" section`);
  const next = markdown.indexOf('\n## ', at + 1);
  const section = markdown.slice(at, next < 0 ? undefined : next);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

async function jsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await jsFiles(p)));
    else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

describe('README set-up', () => {
  let tmp: string;
  let prefix: string;
  let installed: Promise<Run> | undefined;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cosi-readme-'));
    prefix = join(tmp, 'prefix');
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  /**
   * The PATH step of Set up, into a prefix of our own. The clone is built already (Set up's first
   * command; `npm test` builds too), and --ignore-scripts keeps npm versions that would run
   * `prepare` again from rebuilding dist/ under the other test files. --offline: no registry.
   */
  const install = (): Promise<Run> =>
    (installed ??= npm(['install', '-g', '.', '--prefix', prefix, '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], REPO));
  /** PATH as a user has it after Set up: the prefix's bin first, and node. */
  const userPath = (): string => [join(prefix, 'bin'), dirname(process.execPath), process.env['PATH'] ?? '/usr/bin:/bin'].join(':');

  test('npm install -g . puts cosi-fetch, cosi-server and cosi-pack on PATH, linked to the clone', async () => {
    const r = await install();
    assert.equal(r.code, 0, `npm install -g . failed: ${r.stderr}`);
    assert.equal(realpathSync(join(prefix, 'lib', 'node_modules', 'cosi-stream')), realpathSync(REPO));
    assert.deepEqual(Object.keys(pkg.bin).sort(), ['cosi-fetch', 'cosi-pack', 'cosi-server']);
    for (const name of Object.keys(pkg.bin)) {
      // By name, from a directory outside the clone, as the catalog page's commands are run.
      const found = await bash(`command -v ${name} && ${name} --help`, { cwd: tmp, env: { ...process.env, PATH: userPath() }, timeoutMs: 30_000 });
      assert.equal(found.code, 0, `${name} --help: ${found.stderr}`);
      const [where, ...usage] = found.stdout.split('\n');
      assert.equal(where, join(prefix, 'bin', name), `${name} resolves to the installed command`);
      assert.match(usage.join('\n'), new RegExp(`usage: ${name}`));
    }
  });

  test('the package npm pack makes holds every file the commands load; unpacked, they run', async () => {
    const r = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], REPO);
    assert.equal(r.code, 0, r.stderr);
    const [info] = JSON.parse(r.stdout) as [{ filename: string; files: { path: string }[]; bundled: string[] }];
    const files = new Set(info.files.map((f) => f.path));
    for (const target of Object.values(pkg.bin)) assert.ok(files.has(target), `${target} is in the package`);
    for (const dir of ['client', 'server', 'shared']) {
      for (const f of await jsFiles(join(REPO, 'dist', dir))) assert.ok(files.has(relative(REPO, f)), `${relative(REPO, f)} is in the package`);
    }
    const stray = [...files].filter((p) => /^(dist\/)?(test|bench)\//.test(p) || (p.endsWith('.ts') && !p.endsWith('.d.ts')));
    assert.deepEqual(stray, [], 'no tests, benchmarks or TypeScript sources');
    // The patched fzstd travels inside the package: npm 11 runs no install scripts for -g installs,
    // so a postinstall patch-package would not run there.
    assert.deepEqual(info.bundled, pkg.bundleDependencies);
    assert.deepEqual(pkg.bundleDependencies, ['fzstd']);

    const x = join(tmp, 'unpacked');
    await mkdir(x);
    await sh('tar', ['-xzf', join(tmp, info.filename), '-C', x]);
    const root = join(x, 'package');
    for (const f of ['esm/index.mjs', 'lib/index.js']) {
      const bundled = await readFile(join(root, 'node_modules', 'fzstd', f), 'utf8');
      assert.ok(bundled.includes('var pushw = function'), `the bundled fzstd ${f} carries patches/fzstd+0.1.1.patch`);
    }
    // The other dependencies as npm would install them from the registry: the repo's copies.
    for (const dep of Object.keys(pkg.dependencies).filter((d) => !pkg.bundleDependencies?.includes(d))) {
      const to = join(root, 'node_modules', dep);
      await mkdir(dirname(to), { recursive: true });
      await symlink(realpathSync(join(REPO, 'node_modules', dep)), to);
    }
    for (const [name, target] of Object.entries(pkg.bin)) {
      const help = await bash(`node '${join(root, target)}' --help`, { cwd: tmp, env: process.env, timeoutMs: 30_000 });
      assert.equal(help.code, 0, `${name} --help from the package: ${help.stderr}`);
      assert.match(help.stdout, new RegExp(`usage: ${name}`));
    }
    // Decoding loads the worker and the bundled, patched fzstd from the package (forced: Node 20 would
    // otherwise pick the zstd program where it is installed, and a broken bundle would go unnoticed).
    const fx = await packedDisk(SMALL);
    const verify = await bash(`node '${join(root, pkg.bin['cosi-fetch']!)}' verify '${fx.cosi}'`, { cwd: tmp, env: { ...process.env, COSI_ZSTD_DECODER: 'fzstd' }, timeoutMs: 60_000 });
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /OK \(4 images, every SHA-384 and size checked\)/);
  });

  test('Quick start, then Publishing your own image: the README blocks run as written, in order', async () => {
    const blocks = shellBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'), 'Quick start');
    assert.equal(blocks.length, 2, 'Quick start holds two shell blocks: the quick start and the publishing example');
    assert.match(blocks[0]!, /cosi-server --port 8080 &/);
    assert.match(blocks[1]!, /cosi-pack disk\.img/);
    const r0 = await install();
    assert.equal(r0.code, 0, `npm install -g . failed: ${r0.stderr}`);

    // An empty directory: the publishing example packs the disk the quick start fetched, nothing else.
    const work = join(tmp, 'work');
    await mkdir(work);

    // The only change to the text: another port than 8080, which may be taken on a shared machine.
    const port = await freePort();
    const script = ['set -e', ...blocks].join('\n').replaceAll('8080', String(port));
    // Offline: an `npx NAME` that slipped back into README fails here instead of asking the registry.
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: userPath(), HOME: join(tmp, 'home'), npm_config_offline: 'true' };
    for (const k of Object.keys(env)) if (k.startsWith('COSI_') || k === 'XDG_CACHE_HOME') delete env[k];
    await mkdir(env['HOME']!);
    const r = await bash(script, { cwd: work, env, timeoutMs: 300_000 });
    assert.equal(r.code, 0, `the README script failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);

    // The quick start: the sample image inspected, its root and its whole disk fetched.
    assert.match(r.stdout, /OS: Demo Linux/);
    await sh('e2fsck', ['-f', '-n', join(work, 'root.img')]);
    assert.match(await sh('sgdisk', ['-v', join(work, 'disk.img')]), /No problems found/);
    assert.ok((await stat(join(env['HOME']!, '.cache', 'cosi-stream', 'sample'))).isDirectory(), 'the sample catalog is under ~/.cache');
    // Publishing: packed, valid, served and inspected by name.
    assert.match(r.stdout, /valid COSI 1\.2/);
    assert.equal(r.stdout.match(/OS: Demo Linux/g)?.length, 2, 'both inspects name the sample disk\'s OS: the sample, then myos-1.0 packed from its disk');
    assert.match(r.stdout, /root\s+\/\s+ext4/);
    await stat(join(work, 'catalog', 'myos-1.0.cosi'));
    // Both servers were stopped by the script itself (`kill $! && wait $!`), so the port is free.
    const again = await bash(`curl -s -o /dev/null http://127.0.0.1:${port}/healthz`, { cwd: work, env, timeoutMs: 10_000 });
    assert.equal(again.code, 7, 'nothing listens on the port after the script');
  });
});
