/**
 * Reading a command line: node:util parseArgs with usage errors, the -q/-h
 * pair and --help handling every command takes, and whole-number values.
 */
import { parseArgs, type ParseArgsConfig, type ParseArgsOptionsConfig } from 'node:util';
import { CosiError, oneLine } from '../errors.js';
import { formatBytes, parseByteSize } from '../units.js';

/** node:util parseArgs, with its errors turned into usage errors. */
export function parseCli<T extends ParseArgsConfig>(config: T) {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new CosiError('COSI_ERR_USAGE', oneLine(err));
  }
}

/** The flags every command takes besides its own. */
export const QUIET_AND_HELP = {
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * A command's flags (with -q and -h) and positionals; undefined once --help
 * has printed `usage` on stdout, after which the command exits 0.
 */
export function parseCommand<const F extends ParseArgsOptionsConfig>(args: string[], flags: F, usage: string) {
  const parsed = parseCli({ args, allowPositionals: true, options: { ...flags, ...QUIET_AND_HELP } });
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage);
    return undefined;
  }
  return parsed;
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
