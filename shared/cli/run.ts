/**
 * Folder shared/cli/: what the three command lines share (runMain's error line and exit code, argument parsing).
 * Imported by the bins only (client/cli/, server/cli.ts, pack/cli.ts) and server/config.ts; imports errors.ts, units.ts.
 *
 * What every command line shares: one line per error on stderr, the exit code
 * chosen by the error's class, and nothing else (no stack unless COSI_DEBUG).
 */
import { exitCodeOf, oneLine } from '../errors.js';

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
