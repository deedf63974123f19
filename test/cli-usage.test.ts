/**
 * Argument mistakes in the three real bins: one short line with a did-you-mean
 * for flags and commands, exit 2, and --help / -h on every command and
 * subcommand printing that command's usage on stdout with exit 0.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { FETCH_CLI, runBin, type CliResult } from './client-helpers.js';
import { PACK_CLI, REPO } from './fixtures.js';

const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');
const BINS = { 'cosi-fetch': FETCH_CLI, 'cosi-pack': PACK_CLI, 'cosi-server': SERVER_CLI } as const;

async function run(prog: keyof typeof BINS, args: string[]): Promise<CliResult> {
  return runBin(BINS[prog], args, { timeoutMs: 20_000 });
}

/** A usage error: exit 2, exactly one line on stderr, nothing on stdout, no parseArgs wording. */
function usage(r: CliResult, re: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /To specify a positional|ERR_PARSE_ARGS|<value>|ambiguous|Did you forget/);
}

test('a mistyped flag names the flag meant, in each of the three bins', async () => {
  usage(await run('cosi-fetch', ['--partiton', 'root', 'http://127.0.0.1:9/x.cosi']), /^cosi-fetch: error: unknown option --partiton; did you mean --partition\? \(see cosi-fetch --help\)$/);
  usage(await run('cosi-fetch', ['inspect', '--jsn', 'x.cosi']), /unknown option --jsn; did you mean --json\? \(see cosi-fetch inspect --help\)/);
  usage(await run('cosi-fetch', ['--part', 'root', 'x.cosi']), /did you mean --partition\?/);
  usage(await run('cosi-pack', ['disk.raw', '-o', 'x.cosi', '--shrnk']), /^cosi-pack: error: unknown option --shrnk; did you mean --shrink\?/);
  usage(await run('cosi-pack', ['validate', '--deeep', 'x.cosi']), /unknown option --deeep; did you mean --deep\? \(see cosi-pack validate --help\)/);
  usage(await run('cosi-server', ['--prot', '8081']), /^cosi-server: error: unknown option --prot; did you mean --port\?/);
  // Nothing close: no guess, just where to look.
  usage(await run('cosi-fetch', ['--zzzzzz', 'x.cosi']), /^cosi-fetch: error: unknown option --zzzzzz \(see cosi-fetch --help\)$/);
});

test('a flag without its value, or a switch given one, says so in words', async () => {
  usage(await run('cosi-fetch', ['x.cosi', '-o']), /--output needs a value/);
  usage(await run('cosi-fetch', ['--disk=yes', '-o', 'd.img', 'x.cosi']), /--disk takes no value/);
  usage(await run('cosi-server', ['--port']), /^cosi-server: error: --port needs a value \(see cosi-server --help\)$/);
});

test('a value that starts with a dash is named, with the --flag=VALUE form that passes it', async () => {
  usage(await run('cosi-pack', ['disk.img', '-o', '-x']), /^cosi-pack: error: --output needs a value; got "-x", which looks like a flag: write --output=-x if you mean it \(see cosi-pack --help\)$/);
  usage(await run('cosi-server', ['--port', '-1']), /^cosi-server: error: --port needs a value; got "-1", which looks like a flag: write --port=-1 if you mean it \(see cosi-server --help\)$/);
  usage(await run('cosi-fetch', ['--retries', '-1', 'x.cosi']), /^cosi-fetch: error: --retries needs a value; got "-1", which looks like a flag: write --retries=-1 if you mean it \(see cosi-fetch --help\)$/);
});

test('a mistyped command is named with the command meant, not a count of URLs', async () => {
  usage(await run('cosi-fetch', ['inpsect', 'http://127.0.0.1:9/a.cosi']), /^cosi-fetch: error: unknown command 'inpsect'; did you mean 'cosi-fetch inspect'\?/);
  usage(await run('cosi-fetch', ['verfiy', 'http://127.0.0.1:9/a.cosi']), /did you mean 'cosi-fetch verify'\?/);
  usage(await run('cosi-fetch', ['inpsect']), /unknown command 'inpsect'/);
  usage(await run('cosi-pack', ['valdiate', 'x.cosi']), /^cosi-pack: error: unknown command 'valdiate'; did you mean 'cosi-pack validate'\?/);
  // A real second URL is still "one URL only", with what was given.
  usage(await run('cosi-fetch', ['inspect', 'http://a/x.cosi', 'http://b/y.cosi']), /one URL only, got 2: "http:\/\/a\/x.cosi" "http:\/\/b\/y.cosi"/);
});

test('--help and -h work on every command and subcommand, even beside a mistake', async () => {
  const cases: Array<[keyof typeof BINS, string[], RegExp]> = [
    ['cosi-fetch', ['--help'], /^usage: cosi-fetch --partition SEL/],
    ['cosi-fetch', ['-h'], /^usage: cosi-fetch --partition SEL/],
    ['cosi-fetch', ['inspect', '--help'], /^usage: cosi-fetch inspect /],
    ['cosi-fetch', ['verify', '-h'], /^usage: cosi-fetch verify /],
    ['cosi-fetch', ['fetch', '-h'], /^usage: cosi-fetch --partition SEL/],
    ['cosi-fetch', ['--partiton', 'x', '--help'], /^usage: cosi-fetch /],
    ['cosi-pack', ['--help'], /^usage: cosi-pack DISK.raw/],
    ['cosi-pack', ['-h'], /^usage: cosi-pack DISK.raw/],
    ['cosi-pack', ['validate', '--help'], /^usage: cosi-pack validate PATH/],
    ['cosi-pack', ['validate', '-h', '--bogus'], /^usage: cosi-pack validate PATH/],
    ['cosi-server', ['--help'], /^usage: cosi-server /],
    ['cosi-server', ['-h', '--prot', '1'], /^usage: cosi-server /],
  ];
  for (const [prog, args, re] of cases) {
    const r = await run(prog, args);
    assert.equal(r.code, 0, `${prog} ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, re, `${prog} ${args.join(' ')}`);
    assert.equal(r.stderr, '', `${prog} ${args.join(' ')}`);
  }
  // validate's usage is its own, not the writer's.
  const v = await run('cosi-pack', ['validate', '--help']);
  assert.doesNotMatch(v.stdout, /--shrink/);
  assert.match(v.stdout, /--deep/);
});

test('cosi-pack reframe has a usage of its own, and its errors point to it', async () => {
  for (const flag of ['--help', '-h']) {
    const r = await run('cosi-pack', ['reframe', flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: cosi-pack reframe IN\.cosi -o OUT\.cosi /);
    // Its flags only: none of the writer's nor validate's.
    for (const other of [/--shrink/, /--mount/, /--id/, /--deep/, /DISK/]) assert.doesNotMatch(r.stdout, other);
    for (const own of [/--frame-size/, /--level/, /--window-log/, /-o, --output/]) assert.match(r.stdout, own);
  }
  usage(await run('cosi-pack', ['reframe', 'in.cosi']), /^cosi-pack: error: missing -o OUT\.cosi \(see cosi-pack reframe --help\)$/);
  usage(await run('cosi-pack', ['reframe', '-o', 'out.cosi']), /^cosi-pack: error: reframe takes one IN\.cosi, got 0 \(see cosi-pack reframe --help\)$/);
  usage(await run('cosi-pack', ['reframe', 'a.cosi', 'b.cosi', '-o', 'out.cosi']), /reframe takes one IN\.cosi, got 2 \(see cosi-pack reframe --help\)$/);
  usage(await run('cosi-pack', ['reframe', 'in.cosi', '-o', 'out.cosi', '--frame-sise', '1M']), /unknown option --frame-sise; did you mean --frame-size\? \(see cosi-pack reframe --help\)$/);
});

test('cosi-pack --id that is no UUID names the flag and the form it takes', async () => {
  for (const id of ['bogus', '0f8fad5b-d9cb-469f-a165', '0f8fad5bd9cb469fa16570867728950e']) {
    usage(await run('cosi-pack', ['disk.raw', '-o', 'x.cosi', '--id', id]), new RegExp(`^cosi-pack: error: --id must be a UUID \\(8-4-4-4-12 hex digits, e\\.g\\. [0-9a-f-]{36}\\), got "${id}" \\(see cosi-pack --help\\)$`));
  }
  usage(await run('cosi-pack', ['disk.raw', '-o', 'x.cosi', '--no-skippable', '--id', 'bogus']), /--id must be a UUID/);
});

test('a missing positional is one line with where to look', async () => {
  usage(await run('cosi-fetch', ['--partition', 'root']), /^cosi-fetch: error: a URL or path is needed \(see cosi-fetch --help\)$/);
  usage(await run('cosi-pack', ['validate']), /validate takes one PATH .*\(see cosi-pack validate --help\)/);
  usage(await run('cosi-pack', ['disk.raw']), /^cosi-pack: error: missing -o IMAGE.cosi \(see cosi-pack --help\)$/);
});
