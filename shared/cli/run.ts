/**
 * Folder shared/cli/: what the three command lines share (runMain's error line and exit code, argument parsing).
 * Imported by the bins only (client/cli/, server/cli.ts, pack/cli.ts) and server/config.ts; imports errors.ts, errno.ts, units.ts.
 *
 * What every command line shares: one line per error on stderr, the exit code
 * chosen by the error's class, and nothing else (no stack unless COSI_DEBUG).
 */
import { CosiError, exitCodeOf, oneLine } from '../errors.js';
import { errnoOf, systemError } from '../errno.js';

const VERBS: Record<string, string> = { open: 'cannot open', read: 'cannot read', write: 'cannot write', stat: 'cannot read', mkdir: 'cannot create', rename: 'cannot rename', scandir: 'cannot list', unlink: 'cannot remove' };

/**
 * A system error no module turned into words (a bug to fix where it arose,
 * but the user still gets words and the class, not "EISDIR: illegal operation").
 */
function inWords(err: unknown): unknown {
  if (err instanceof CosiError || errnoOf(err) === undefined) return err;
  const e = err as NodeJS.ErrnoException;
  const what = e.path ? `${VERBS[e.syscall ?? ''] ?? 'cannot use'} ${e.path}` : e.syscall ? `${e.syscall} failed` : 'system error';
  return systemError(what, err, { writing: e.syscall === 'open' && e.code === 'ENOENT' ? false : undefined });
}

export async function runMain(prog: string, main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    process.exitCode = code ?? 0;
  } catch (caught) {
    const err = inWords(caught);
    process.stderr.write(`${prog}: error: ${oneLine(err)}\n`);
    if (process.env.COSI_DEBUG && caught instanceof Error) process.stderr.write(`${caught.stack}\n`);
    process.exitCode = exitCodeOf(err);
  }
}
