/**
 * cosi-fetch's command line: the usage text, its flags, and the settings the
 * commands share (output mode, jobs, progress, how to open the image, warnings)
 * read from argv.
 */
import { CosiError } from '../../shared/errors.js';
import { commandTypo, intOption, parseCommand, sizeOption, usageError } from '../../shared/cli/args.js';
import { checkPin, type OpenOptions } from '../image.js';
import { METADATA_SIZE_OPTION } from '../../shared/format/metadata.js';
import { BarProgress, JsonProgress, NullProgress, type Progress } from '../progress.js';

export const PROG = 'cosi-fetch';


const USAGE = `usage: cosi-fetch --partition SEL [--partition SEL...] [-o FILE|DIR|DEVICE] URL
       cosi-fetch --disk -o FILE|DEVICE URL
       cosi-fetch inspect [--json] URL
       cosi-fetch verify [--json] URL

URL is http(s)://..., file://..., a local path, or an object-store URL: s3://BUCKET/KEY,
az://CONTAINER/BLOB, https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB (credentials from AWS_* or
AZURE_STORAGE_* variables).
SEL is a partition type (root, esp, srv, ...), a mount point (/var), a GPT number or an image path.

options:
  -p, --partition SEL        a partition to fetch (repeatable; several need -o DIR)
  -d, --disk                 the whole disk: partition table, every partition, backup GPT
  -o, --output PATH          file, directory or block device (default: current directory)
      --verify-after         read the output back and compare after writing
      --grow                 grow shrunk ext2/3/4 filesystems to fill their partitions
      --metadata-sha384 HEX  refuse the image unless metadata.json has this SHA-384
      --allow-unverified     accept images without a SHA-384 (COSI 1.0 only; 1.1 requires one)
      --max-metadata-size N  refuse a larger metadata.json before reading it (default 4M)
      --mirror URL           the same file elsewhere, used when the first fails (repeatable)
  -H, --header 'K: V'        extra request header (repeatable)
  -j, --jobs N               images fetched at once (default 2, as long as their zstd windows
                             fit in one full window plus 64 MiB; an explicit N allows N windows)
      --resume               keep a partial output and a journal when interrupted or killed, and continue
                             from the last written frame when run again with the same arguments
                             (framed images, --partition to regular files)
      --threads N            frames of a framed image (one with a seek table) decoded at once
                             (default: the cores available; needs the zstd program)
      --progress MODE        auto (a bar when stderr is a terminal), bar, json, none
      --json                 print a JSON summary on stdout
      --timeout SEC          give up on a connection idle this long, or below 1 KiB/s for twice
                             as long, then resume (default 30)
      --retries N            failures tolerated per transfer (default 6)
  -q, --quiet                no warnings on stderr
  -h, --help
`;

/** The flags every command shares, in the words of the main usage. */
const SOURCE_OPTIONS = `options (as for cosi-fetch; see cosi-fetch --help):
      --json, --metadata-sha384 HEX, --allow-unverified, --max-metadata-size N,
      --mirror URL, -H 'K: V', --timeout SEC, --retries N, -j N, --progress MODE, -q, -h
`;

/** What `cosi-fetch COMMAND --help` prints. */
const COMMAND_USAGE = {
  fetch: USAGE,
  inspect: `usage: cosi-fetch inspect [--json] [options] URL

What the image holds: OS, disk layout, one row per partition (or JSON with --json),
read from metadata.json and the primary GPT only.

${SOURCE_OPTIONS}`,
  verify: `usage: cosi-fetch verify [--json] [options] URL

Reads every image, checks its SHA-384, zstd stream and size, and writes nothing.
Exits 0 when all pass, 4 when an image has no SHA-384 (unless --allow-unverified).

${SOURCE_OPTIONS}`,
} as const;

const COMMANDS = ['inspect', 'verify', 'fetch'] as const;

/** What only a fetch does with a flag: inspect and verify write nothing, so they refuse these rather than ignore them. */
const FETCH_ONLY: Readonly<Record<string, string>> = {
  partition: 'selects what to fetch',
  disk: 'fetches the whole disk',
  output: 'names what a fetch writes',
  'verify-after': 'reads back what a fetch wrote',
  grow: 'grows what a fetch wrote',
  resume: 'continues an interrupted fetch',
};

/** cosi-fetch's own flags; -q and -h come with parseCommand. */
const FLAGS = {
  partition: { type: 'string', short: 'p', multiple: true },
  disk: { type: 'boolean', short: 'd' },
  output: { type: 'string', short: 'o' },
  'verify-after': { type: 'boolean' },
  grow: { type: 'boolean' },
  'metadata-sha384': { type: 'string' },
  'allow-unverified': { type: 'boolean' },
  'max-metadata-size': { type: 'string' },
  mirror: { type: 'string', multiple: true },
  header: { type: 'string', short: 'H', multiple: true },
  jobs: { type: 'string', short: 'j' },
  threads: { type: 'string' },
  resume: { type: 'boolean' },
  progress: { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  retries: { type: 'string' },
} as const;

/** What every command reads from the command line. */
export interface Common {
  json: boolean;
  quiet: boolean;
  jobs: number;
  /** --jobs as given: lifts the decoder memory budget (see CosiImage.decodeBudget). */
  jobsGiven?: number;
  progress: Progress;
  open: OpenOptions;
  warnings: string[];
  warn: (s: string) => void;
}

/** What to do to a fetched partition besides writing it. */
export interface WriteChoices {
  grow: boolean;
  verifyAfter: boolean;
  /** --resume: partial outputs survive an interrupt and a rerun continues them. */
  resume: boolean;
}

export interface Invocation {
  command: 'fetch' | 'inspect' | 'verify';
  url: string;
  c: Common;
  partitions?: string[];
  disk: boolean;
  output?: string;
  write: WriteChoices;
}

function parseHeaders(list: string[] | undefined): Record<string, string> | undefined {
  if (!list || list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    if (i <= 0) throw new CosiError('COSI_ERR_USAGE', `--header must look like 'Name: value', got ${JSON.stringify(h)}`);
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

function formatDelay(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

function makeProgress(mode: string | undefined): Progress {
  const m = mode ?? 'auto';
  if (m === 'json') return new JsonProgress(process.stderr);
  if (m === 'none') return new NullProgress();
  if (m === 'bar') return new BarProgress(process.stderr);
  if (m === 'auto') return process.stderr.isTTY ? new BarProgress(process.stderr) : new NullProgress();
  throw new CosiError('COSI_ERR_USAGE', `--progress must be auto, bar, json or none, got ${JSON.stringify(m)}`);
}

/** The command and its settings; undefined once --help has printed the usage. */
export function parseInvocation(argv: string[]): Invocation | undefined {
  const command = (COMMANDS as readonly string[]).includes(argv[0] ?? '') ? (argv.shift() as Invocation['command']) : 'fetch';
  const name = { prog: PROG, command: command === 'fetch' ? undefined : command };
  const parsed = parseCommand(argv, FLAGS, COMMAND_USAGE[command], name);
  if (!parsed) return undefined;
  const { values, positionals } = parsed;
  if (command === 'fetch') {
    const typo = commandTypo(positionals[0], COMMANDS, positionals.length > 1, PROG);
    if (typo) throw typo;
  }
  if (command !== 'fetch') {
    const flag = Object.keys(FETCH_ONLY).find((f) => values[f as keyof typeof values] !== undefined);
    if (flag) throw usageError(`${command} does not take --${flag}: it ${FETCH_ONLY[flag]}, and ${command} writes nothing; drop it, or run ${PROG} without '${command}' to fetch`, name);
    if (command === 'inspect' && values.threads !== undefined) throw usageError('inspect does not take --threads: it decodes no image; drop it', name);
  }
  if (positionals.length === 0) throw usageError('a URL or path is needed', name);
  if (positionals.length > 1) throw usageError(`one URL only, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(' ')}`, name);
  const url = positionals[0]!;
  const warnings: string[] = [];
  const quiet = values.quiet ?? false;
  const timeout = intOption('timeout', values.timeout, 1, 86400);
  const progress = makeProgress(values.progress);
  /** A line on stderr that does not tear a progress bar. */
  const say = (line: string): void => (progress.note ? progress.note(line) : void process.stderr.write(`${line}\n`));
  const c: Common = {
    json: values.json ?? false,
    quiet,
    jobs: intOption('jobs', values.jobs, 1, 64) ?? 2,
    jobsGiven: intOption('jobs', values.jobs, 1, 64),
    progress,
    open: {
      mirrors: values.mirror,
      headers: parseHeaders(values.header),
      metadataSha384: checkPin(values['metadata-sha384']),
      idleTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
      // A trickling server never goes idle: the low-speed window follows --timeout (2x, as the defaults 30 s / 60 s).
      lowSpeedWindowMs: timeout === undefined ? undefined : 2 * timeout * 1000,
      retries: intOption('retries', values.retries, 0, 1000),
      maxMetadataBytes: sizeOption('max-metadata-size', values['max-metadata-size'], METADATA_SIZE_OPTION.min, METADATA_SIZE_OPTION.max),
      allowUnverified: values['allow-unverified'] ?? false,
      // Every retry as it happens: a refused or stalled server is not 17 s of silence.
      onEvent: quiet ? undefined : (e) => {
        if (e.type === 'retry') say(`${PROG}: ${e.reason}, retry ${e.attempt}/${e.retries} in ${formatDelay(e.delayMs)} (${e.url})`);
        else if (e.type === 'mirror') say(`${PROG}: switching to the mirror ${e.to}`);
      },
      decodeThreads: intOption('threads', values.threads, 1, 256),
    },
    warnings,
    warn: (s) => {
      warnings.push(s);
      if (!quiet) say(`${PROG}: warning: ${s}`);
    },
  };
  return {
    command,
    url,
    c,
    partitions: values.partition,
    disk: values.disk ?? false,
    output: values.output,
    write: { grow: values.grow ?? false, verifyAfter: values['verify-after'] ?? false, resume: values.resume ?? false },
  };
}
