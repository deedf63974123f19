/**
 * Reading a command line: node:util parseArgs with short usage errors (and a
 * did-you-mean for flags and commands), the -q/-h pair and --help handling
 * every command takes, and whole-number values.
 */
import { existsSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig, type ParseArgsOptionsConfig } from 'node:util';
import { CosiError, oneLine } from '../errors.js';
import { formatBytes, parseByteSize } from '../units.js';
import { closest } from './suggest.js';

/** Who is asking, for the "see PROG --help" of every usage error. */
export interface CliName {
  prog: string;
  /** The subcommand, when not the default one. */
  command?: string;
}

const helpOf = (n: CliName): string => `${n.prog}${n.command ? ` ${n.command}` : ''} --help`;

export function usageError(message: string, name: CliName): CosiError {
  return new CosiError('COSI_ERR_USAGE', `${message} (see ${helpOf(name)})`);
}

/** The long name of a flag as typed (`-o` or `--output`). */
function longName(raw: string, options: ParseArgsOptionsConfig): string {
  if (raw.startsWith('--')) return raw;
  const hit = Object.entries(options).find(([, o]) => o.short === raw.slice(1));
  return hit ? `--${hit[0]}` : raw;
}

/**
 * `--port -1`: parseArgs will not take a value that starts with '-' (it may be
 * a forgotten value before the next flag); say what it got and how to pass it.
 */
function dashValue(raw: string, args: readonly string[], options: ParseArgsOptionsConfig, name: CliName): CosiError {
  const i = args.findIndex((a, j) => a === raw && /^-./.test(args[j + 1] ?? ''));
  const value = i >= 0 ? args[i + 1] : undefined;
  const flag = longName(raw, options);
  if (value === undefined) return usageError(`${flag} needs a value`, name);
  return usageError(`${flag} needs a value; got ${JSON.stringify(value)}, which looks like a flag: write ${flag}=${value} if you mean it`, name);
}

/** parseArgs' error as one short line: the flag, what is wrong with it, and the flag meant when it is a typo. */
function translate(err: unknown, options: ParseArgsOptionsConfig, args: readonly string[], name: CliName): CosiError {
  const code = (err as { code?: string }).code;
  const msg = oneLine(err);
  const quoted = /'([^']+)'/.exec(msg)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = quoted.split('=')[0]!;
    const long = Object.keys(options);
    let meant: string | undefined;
    if (flag.startsWith('--')) {
      const m = closest(flag.slice(2), long);
      if (m) meant = `--${m}`;
    } else {
      // `-partition`: a long flag with one dash.
      const m = flag.length > 2 ? closest(flag.slice(1), long) : undefined;
      if (m) meant = `--${m}`;
    }
    return new CosiError('COSI_ERR_USAGE', `unknown option ${flag}${meant ? `; did you mean ${meant}?` : ''} (see ${helpOf(name)})`);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const flag = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
    if (/argument missing/.test(msg)) return usageError(`${flag} needs a value`, name);
    if (/does not take an argument/.test(msg)) return usageError(`${flag} takes no value`, name);
    if (/argument is ambiguous/.test(msg)) return dashValue(quoted, args, options, name);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return usageError(`unexpected argument ${JSON.stringify(quoted)}`, name);
  return usageError(msg.replace(/\. To specify a positional.*$/, ''), name);
}

/** node:util parseArgs, with its errors turned into short usage errors. */
export function parseCli<T extends ParseArgsConfig>(config: T, name: CliName) {
  try {
    return parseArgs(config);
  } catch (err) {
    throw translate(err, config.options ?? {}, config.args ?? process.argv.slice(2), name);
  }
}

/** The flags every command takes besides its own. */
export const QUIET_AND_HELP = {
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** -h or --help anywhere before `--`: help wins over any other mistake on the line. */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/**
 * A command's flags (with -q and -h) and positionals; undefined once --help
 * has printed `usage` on stdout, after which the command exits 0.
 */
export function parseCommand<const F extends ParseArgsOptionsConfig>(args: string[], flags: F, usage: string, name: CliName) {
  if (wantsHelp(args)) {
    process.stdout.write(usage);
    return undefined;
  }
  return parseCli({ args, allowPositionals: true, options: { ...flags, ...QUIET_AND_HELP } }, name);
}

/**
 * A first word that is no path nor URL and is not a command: a mistyped
 * command (`inpsect URL`), said so instead of the error the rest would give.
 * `more` says whether other positionals follow it.
 */
export function commandTypo(word: string | undefined, commands: readonly string[], more: boolean, prog: string): CosiError | undefined {
  if (word === undefined || /[/:.\\]/.test(word) || existsSync(word)) return undefined;
  const meant = closest(word, commands);
  if (!meant && !more) return undefined;
  const list = commands.map((c) => `'${c}'`).join(', ');
  return new CosiError('COSI_ERR_USAGE', `unknown command '${word}'${meant ? `; did you mean '${prog} ${meant}'?` : `; the commands are ${list}`} (see ${prog} --help)`);
}

export function intOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new CosiError('COSI_ERR_USAGE', `--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A byte count option ('8M', '8MiB', '8388608'), from `min` to `max` bytes. */
export function sizeOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = parseByteSize(value);
  if (n === undefined || n < min || n > max) {
    throw new CosiError('COSI_ERR_USAGE', `--${name} must be a size from ${formatBytes(min)} to ${formatBytes(max)} (bytes, or with K, M or G), got ${JSON.stringify(value)}`);
  }
  return n;
}
