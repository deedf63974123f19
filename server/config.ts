/**
 * Server settings from flags and environment variables. Every flag has a
 * COSI_* twin so the server can run from a unit file or a container without
 * a wrapper script; a flag given on the command line wins over the variable.
 */
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { CosiError } from '../shared/errors.js';
import { parseCli, sizeOption, wantsHelp } from '../shared/cli/args.js';
import { MAX_METADATA_BYTES, METADATA_SIZE_OPTION } from '../shared/format/metadata.js';
import { parseRemoteSpec, specKey, type RemoteSpec } from './catalog/remote-spec.js';

export interface ServerConfig {
  /** Catalog directory; undefined serves the built-in sample catalog. */
  root?: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Seconds between full rescans (the watcher can miss events); 0 disables. */
  rescanSeconds: number;
  /** fs.watch the root for immediate pickup. */
  watch: boolean;
  /** Hash every image once in the background and mark corrupt partitions. */
  verify: boolean;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  quiet: boolean;
  /** More ranges than this in one request get a plain 200 of the whole body. */
  maxRanges: number;
  maxDecompressions: number;
  maxOpenFiles: number;
  /** Connections served at once; past it, 503 with Retry-After. Undefined: 1024, or less if the open-file limit is lower. */
  maxConnections?: number;
  /** A larger metadata.json makes its archive invalid before it is read (--max-metadata-size). */
  maxMetadataBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** A connection with no traffic this long is closed: a client that stops reading must not hold a file handle forever. */
  idleTimeoutMs: number;
  /** How long SIGTERM waits for running transfers before cutting them. */
  shutdownGraceMs: number;
  /** Where the sample catalog is built when no root is given. */
  cacheDir: string;
  /** Index records kept in memory; evicted ones are rebuilt on demand. */
  indexCacheEntries: number;
  /** Remote archives (http/https), indexed by range reads and served by proxy or redirect. */
  remotes: RemoteSpec[];
  /** File listing more remotes, one `[NAME=]URL` per line; re-read on every rescan. */
  remoteList?: string;
  /** Byte requests for the whole of a remote archive are answered with a redirect to its origin. */
  redirect: boolean;
  /** Base URL clients reach this server at (behind a proxy or CDN); default: from the request's Host. */
  publicUrl?: string;
  /** Installer kernel and initramfs for boot.ipxe (absolute URLs, or paths on publicUrl). */
  ipxeKernel?: string;
  ipxeInitrd?: string;
  /** Extra kernel command line words for boot.ipxe. */
  ipxeCmdline?: string;
  /** cosi.disk= in boot.ipxe. */
  ipxeDisk?: string;
  /** Directory whose files (the installer's kernel and initramfs) are served at /netboot/NAME. */
  netbootDir?: string;
  /** Processes serving the port (server/cluster/); 1 serves from this process alone. */
  workers: number;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'cosi-stream');
}

export function defaultConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  return {
    host: '127.0.0.1',
    port: 8080,
    rescanSeconds: 30,
    watch: true,
    verify: false,
    quiet: false,
    maxRanges: 16,
    maxDecompressions: 4,
    maxOpenFiles: 512,
    maxMetadataBytes: MAX_METADATA_BYTES,
    headersTimeoutMs: 30_000,
    requestTimeoutMs: 300_000,
    idleTimeoutMs: 120_000,
    shutdownGraceMs: 30_000,
    cacheDir: defaultCacheDir(env),
    indexCacheEntries: 10_000,
    remotes: [],
    redirect: false,
    workers: availableParallelism(),
  };
}

export const USAGE = `usage: cosi-server [--root DIR] [--host ADDR] [--port N] [options]

Serves every *.cosi file under DIR (recursively) with full HTTP range support.
Without --root it serves a small sample catalog, built on first start.

options (each also read from the environment variable shown):
  --root DIR               catalog directory                     COSI_ROOT
  --host ADDR              listen address (default 127.0.0.1)    COSI_HOST
  --port N                 listen port, 0 for any (default 8080) COSI_PORT
  --rescan SECONDS         full rescan interval, 0 = off (30)    COSI_RESCAN
  --no-watch               do not watch the root for changes     COSI_NO_WATCH=1
  --verify                 hash every image once in background   COSI_VERIFY=1
  --token-file FILE        bearer tokens, one per line           COSI_TOKEN_FILE
  --tls-cert FILE          PEM certificate (with --tls-key)      COSI_TLS_CERT
  --tls-key FILE           PEM private key                       COSI_TLS_KEY
  --max-ranges N           ranges per request before a 200 (16) COSI_MAX_RANGES
  --max-decompress N       concurrent ?decompress=1 streams (4)  COSI_MAX_DECOMPRESS
  --max-open-files N       open archive handles (512)            COSI_MAX_OPEN_FILES
  --max-connections N      connections at once, then 503 (1024)  COSI_MAX_CONNECTIONS
  --max-metadata-size N    larger metadata.json is invalid (4M)  COSI_MAX_METADATA_SIZE
  --headers-timeout SEC    time to receive request headers (30)  COSI_HEADERS_TIMEOUT
  --request-timeout SEC    time to receive a request (300)       COSI_REQUEST_TIMEOUT
  --idle-timeout SEC       close stalled connections after (120) COSI_IDLE_TIMEOUT
  --shutdown-grace SEC     SIGTERM drain deadline (30)           COSI_SHUTDOWN_GRACE
  --cache-dir DIR          sample catalog location               COSI_CACHE_DIR
  --remote [NAME=]URL      also list a remote .cosi (repeatable) COSI_REMOTE (space-separated)
                           or every .cosi under s3://BUCKET/PREFIX, az://CONTAINER/PREFIX
  --remote-list FILE       remote .cosi URLs, one per line       COSI_REMOTE_LIST
  --redirect               answer /cosi/ of remotes with a 307   COSI_REDIRECT=1
  --public-url URL         base URL clients use for this server  COSI_PUBLIC_URL
  --ipxe-kernel URL        installer kernel for boot.ipxe        COSI_IPXE_KERNEL
  --ipxe-initrd URL        installer initramfs for boot.ipxe     COSI_IPXE_INITRD
  --ipxe-cmdline WORDS     extra kernel command line words       COSI_IPXE_CMDLINE
  --ipxe-disk DEV          cosi.disk= in boot.ipxe               COSI_IPXE_DISK
  --netboot-dir DIR        serve DIR's files at /netboot/NAME    COSI_NETBOOT_DIR
  --workers N              serving processes (one per core)      COSI_WORKERS
  -q, --quiet              no request log on stderr              COSI_QUIET=1
  -h, --help

When listening, one JSON line goes to stdout: {"event":"listening","url":...}.
`;

const VALUE = { type: 'string' } as const;
const SWITCH = { type: 'boolean' } as const;

/** The flags as parseArgs takes them, in USAGE order; each but --help also has a variable (envName). */
const FLAGS = {
  root: VALUE, host: VALUE, port: VALUE, rescan: VALUE, 'no-watch': SWITCH, verify: SWITCH,
  'token-file': VALUE, 'tls-cert': VALUE, 'tls-key': VALUE,
  'max-ranges': VALUE, 'max-decompress': VALUE, 'max-open-files': VALUE, 'max-connections': VALUE, 'max-metadata-size': VALUE,
  'headers-timeout': VALUE, 'request-timeout': VALUE, 'idle-timeout': VALUE, 'shutdown-grace': VALUE,
  'cache-dir': VALUE, remote: { type: 'string', multiple: true }, 'remote-list': VALUE, redirect: SWITCH, 'public-url': VALUE,
  'ipxe-kernel': VALUE, 'ipxe-initrd': VALUE, 'ipxe-cmdline': VALUE, 'ipxe-disk': VALUE, 'netboot-dir': VALUE, workers: VALUE,
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flag = keyof typeof FLAGS;

/** The variable read when the flag is not given: COSI_ and the flag's name in capitals, '-' as '_' (--no-watch: COSI_NO_WATCH). */
function envName(flag: Flag): string | undefined {
  return flag === 'help' ? undefined : `COSI_${flag.toUpperCase().replaceAll('-', '_')}`;
}

function envBool(name: string, v: string): boolean {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off|)$/i.test(v)) return false;
  throw new CosiError('COSI_ERR_USAGE', `${name} must be 1 or 0, got ${JSON.stringify(v)}`);
}

function num(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new CosiError('COSI_ERR_USAGE', `--${flag} must be a number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function int(flag: string, v: string, min: number, max: number): number {
  const n = num(flag, v, min, max);
  if (!Number.isInteger(n)) throw new CosiError('COSI_ERR_USAGE', `--${flag} must be a whole number, got ${JSON.stringify(v)}`);
  return n;
}

export type ParsedArgs = { help: true } | { help: false; config: ServerConfig };

/** Flags first, then environment, then defaults. */
export function parseConfig(args: string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  if (wantsHelp(args)) return { help: true };
  const { values, positionals } = parseCli({ args, options: FLAGS, allowPositionals: true, strict: true }, { prog: 'cosi-server' });
  if (positionals.length > 0) throw new CosiError('COSI_ERR_USAGE', `unexpected argument ${JSON.stringify(positionals[0])}; did you mean --root ${positionals[0]}? (see cosi-server --help)`);

  const get = (flag: Flag): string | boolean | undefined => {
    const v = (values as Record<string, string | boolean | string[] | undefined>)[flag];
    if (Array.isArray(v)) throw new CosiError('COSI_ERR_INTERNAL', `--${flag} is repeatable; read it as a list`);
    if (v !== undefined) return v;
    const name = envName(flag);
    const e = name ? env[name] : undefined;
    if (e === undefined) return undefined;
    return FLAGS[flag].type === 'boolean' ? envBool(name!, e) : e;
  };
  const str = (flag: Flag): string | undefined => {
    const v = get(flag);
    if (typeof v !== 'string') return undefined;
    if (v === '') throw new CosiError('COSI_ERR_USAGE', `--${flag} must not be empty`);
    return v;
  };
  const bool = (flag: Flag): boolean => get(flag) === true;

  const c = defaultConfig(env);
  const s = (flag: Flag, apply: (v: string) => void) => {
    const v = str(flag);
    if (v !== undefined) apply(v);
  };
  s('root', (v) => (c.root = v));
  s('host', (v) => (c.host = v));
  s('port', (v) => (c.port = int('port', v, 0, 65535)));
  s('rescan', (v) => (c.rescanSeconds = num('rescan', v, 0, 86_400)));
  c.watch = !bool('no-watch');
  c.verify = bool('verify');
  s('token-file', (v) => (c.tokenFile = v));
  s('tls-cert', (v) => (c.tlsCert = v));
  s('tls-key', (v) => (c.tlsKey = v));
  s('max-ranges', (v) => (c.maxRanges = int('max-ranges', v, 1, 1000)));
  s('max-decompress', (v) => (c.maxDecompressions = int('max-decompress', v, 0, 1000)));
  s('max-open-files', (v) => (c.maxOpenFiles = int('max-open-files', v, 1, 1_000_000)));
  s('max-connections', (v) => (c.maxConnections = int('max-connections', v, 1, 1_000_000)));
  s('max-metadata-size', (v) => (c.maxMetadataBytes = sizeOption('max-metadata-size', v, METADATA_SIZE_OPTION.min, METADATA_SIZE_OPTION.max)!));
  s('headers-timeout', (v) => (c.headersTimeoutMs = num('headers-timeout', v, 1, 3600) * 1000));
  s('request-timeout', (v) => (c.requestTimeoutMs = num('request-timeout', v, 1, 86_400) * 1000));
  s('idle-timeout', (v) => (c.idleTimeoutMs = num('idle-timeout', v, 1, 86_400) * 1000));
  s('shutdown-grace', (v) => (c.shutdownGraceMs = num('shutdown-grace', v, 0, 3600) * 1000));
  s('cache-dir', (v) => (c.cacheDir = v));
  c.quiet = bool('quiet');
  // Repeatable: every --remote flag, else the variable's space-separated words.
  const remoteFlags = (values as { remote?: string[] }).remote;
  const remoteWords = remoteFlags ?? (env['COSI_REMOTE'] ?? '').split(/\s+/).filter(Boolean);
  c.remotes = remoteWords.map((w) => parseRemoteSpec(w, '--remote'));
  const dup = firstDuplicate(c.remotes.map(specKey));
  if (dup !== undefined) throw new CosiError('COSI_ERR_USAGE', `two remotes are named ${JSON.stringify(dup)}: give one a name with NAME=URL`);
  s('remote-list', (v) => (c.remoteList = v));
  c.redirect = bool('redirect');
  s('public-url', (v) => (c.publicUrl = parsePublicUrl(v)));
  s('ipxe-kernel', (v) => (c.ipxeKernel = bootWord('ipxe-kernel', v)));
  s('ipxe-initrd', (v) => (c.ipxeInitrd = bootWord('ipxe-initrd', v)));
  s('ipxe-cmdline', (v) => (c.ipxeCmdline = bootWords('ipxe-cmdline', v)));
  s('ipxe-disk', (v) => (c.ipxeDisk = bootWord('ipxe-disk', v)));
  s('netboot-dir', (v) => (c.netbootDir = v));
  s('workers', (v) => (c.workers = int('workers', v, 1, 256)));
  if ((c.ipxeKernel === undefined) !== (c.ipxeInitrd === undefined)) {
    throw new CosiError('COSI_ERR_USAGE', '--ipxe-kernel and --ipxe-initrd go together: give both or neither');
  }
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    throw new CosiError('COSI_ERR_USAGE', '--tls-cert and --tls-key go together: give both or neither');
  }
  return { help: false, config: c };
}

function firstDuplicate(xs: string[]): string | undefined {
  const seen = new Set<string>();
  for (const x of xs) {
    if (seen.has(x)) return x;
    seen.add(x);
  }
  return undefined;
}

/** An http(s) base URL without a trailing slash, query or fragment. */
function parsePublicUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new CosiError('COSI_ERR_USAGE', `--public-url must be an http(s) URL, got ${JSON.stringify(v)}`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.search || u.hash || u.username || u.password) {
    throw new CosiError('COSI_ERR_USAGE', `--public-url must be a plain http(s) base URL (no query, fragment or credentials), got ${JSON.stringify(v)}`);
  }
  return u.href.replace(/\/+$/, '');
}

/** iPXE expands ${...} and splits on white space: a word for its command line must have neither. */
function bootWord(flag: string, v: string): string {
  if (/[\s$"'\\]/.test(v)) throw new CosiError('COSI_ERR_USAGE', `--${flag} must be one word without spaces, quotes, backslashes or '$', got ${JSON.stringify(v)}`);
  return v;
}

function bootWords(flag: string, v: string): string {
  const words = v.trim().split(/[ \t]+/).filter(Boolean);
  if (/[\r\n]/.test(v)) throw new CosiError('COSI_ERR_USAGE', `--${flag} must be one line`);
  return words.map((w) => bootWord(flag, w)).join(' ');
}
