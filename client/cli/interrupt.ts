/**
 * SIGINT, SIGTERM and SIGHUP while cosi-fetch runs: no finally block runs on
 * a signal, so the handler removes the temporary outputs itself (output.ts
 * keeps the list), prints one line saying what was interrupted, and exits
 * 128 + the signal's number, as a shell reports a process the signal killed.
 * A block device is left as it is: a whole disk gets its partition table
 * last, so an interrupted install never looks complete.
 */
import { removeTemporariesSync, resumableOutputs, type Target } from '../output.js';

const EXIT: Readonly<Record<string, number>> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/** What happened to each output, for the one line. */
function outcome(targets: Target[]): string {
  const files = targets.filter((t) => t.kind === 'file' && !t.scratch).map((t) => t.path);
  const devices = targets.filter((t) => t.kind === 'device').map((t) => t.path);
  const parts: string[] = [];
  if (files.length > 0) parts.push(`the partial ${files.join(', ')} ${files.length === 1 ? 'was' : 'were'} removed`);
  const kept = resumableOutputs();
  if (kept.length > 0) parts.push(`the partial ${kept.join(', ')} ${kept.length === 1 ? 'was' : 'were'} kept: run the same command again to continue (--resume)`);
  if (devices.length > 0) parts.push(`${devices.join(', ')} ${devices.length === 1 ? 'is' : 'are'} left partly written (a whole disk gets its partition table last, so it does not look complete)`);
  if (parts.length === 0) return targets.length > 0 ? 'its working files were removed' : 'no output had been opened';
  return parts.join('; ');
}

/** Handle the three signals for the rest of the process; `what` names the work ('the fetch of URL'). */
export function exitOnInterrupt(prog: string, what: string, beforeExit?: () => void): void {
  let handled = false;
  for (const [signal, code] of Object.entries(EXIT)) {
    process.on(signal, () => {
      if (handled) return;
      handled = true;
      const targets = removeTemporariesSync();
      beforeExit?.();
      // stderr is synchronous for files, pipes and terminals on Linux: the line is out before exit.
      process.stderr.write(`${prog}: interrupted by ${signal} during ${what}: ${outcome(targets)}\n`);
      process.exit(code);
    });
  }
}
