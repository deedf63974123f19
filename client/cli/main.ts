/**
 * cosi-fetch: fetch partitions or whole disks from a COSI image over HTTP
 * (or a local path), verifying as it writes. Progress and warnings go to
 * stderr; stdout carries only the table, or the --json summary. Loaded by
 * cli.ts, which first sets up what must precede loading: the compile cache,
 * the V8 flags and the decode worker's boot.
 */
import { CosiError } from '../../shared/errors.js';
import { runMain } from '../../shared/cli/run.js';
import { closeSharedAgents } from '../../shared/transport/http/agent.js';
import { fetchDisk, fetchPartitions } from './fetch.js';
import { inspect } from './inspect.js';
import { explainWrongUrl } from '../wrong-url.js';
import { exitOnInterrupt } from './interrupt.js';
import { parseInvocation, PROG } from './options.js';
import { verify } from './verify.js';

async function main(): Promise<number> {
  const inv = parseInvocation(process.argv.slice(2));
  if (!inv) return 0;
  const { command, url, c } = inv;
  exitOnInterrupt(PROG, `the ${command} of ${url}`, () => c.progress.close());
  try {
    if (command === 'inspect') await inspect(url, c);
    else if (command === 'verify') await verify(url, c);
    else if (inv.disk) {
      if (inv.partitions?.length) throw new CosiError('COSI_ERR_USAGE', '--disk and --partition exclude each other');
      await fetchDisk(url, inv.output, inv.write, c);
    } else if (inv.partitions?.length) {
      await fetchPartitions(url, inv.partitions, inv.output, inv.write, c);
    } else {
      throw new CosiError('COSI_ERR_USAGE', `say what to fetch: --partition SEL or --disk (see ${PROG} --help)`);
    }
  } catch (err) {
    throw await explainWrongUrl(url, err, c.open);
  } finally {
    await closeSharedAgents().catch(() => undefined);
  }
  return 0;
}

await runMain(PROG, main);
