/**
 * What every command line shares: one line per error on stderr, the exit code
 * chosen by the error's class, and nothing else (no stack unless COSI_DEBUG).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CosiError, exitCodeOf, oneLine } from '../errors.js';

export async function runMain(prog: string, main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    process.exitCode = code ?? 0;
  } catch (err) {
    process.stderr.write(`${prog}: error: ${oneLine(err)}\n`);
    if (process.env.COSI_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitCodeOf(err);
  }
}

/** node:util parseArgs, with its errors turned into usage errors. */
export function parseCli<T extends ParseArgsConfig>(config: T) {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new CosiError('COSI_ERR_USAGE', oneLine(err));
  }
}

export function intOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new CosiError('COSI_ERR_USAGE', `--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}
