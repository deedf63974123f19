#!/usr/bin/env node
import { CosiError, isCosiError, oneLine } from '../errors.js';
import { sniff, startsLikeCosi } from '../format/archive.js';
import { checkImages, type DeepReport } from '../format/deep.js';
import { FileSource } from '../transport/file-source.js';
import { checkArchive } from '../format/check.js';
import { commandTypo, intOption, parseCommand, sizeOption, usageError } from '../cli/args.js';
import { runMain } from '../cli/run.js';
import { MAX_METADATA_BYTES, METADATA_SIZE_OPTION, metadataTooLarge, parseMetadata, type Bootloader, type CosiMetadata } from '../format/metadata.js';
import { formatIssues, validateCosi, type ValidationResult } from '../format/validate.js';
import { MIN_FRAME_SIZE } from '../zstd/index.js';
import { packDisk } from './pack.js';
import { reframe } from './reframe.js';
import { readFlagFile, readPackageFile } from './osinfo.js';
import { outputProblem } from './output.js';
import { UUID_RE } from '../format/validate-metadata.js';

const VALIDATE_USAGE = `usage: cosi-pack validate PATH [--deep] [--json] [--max-metadata-size N]

Checks a .cosi file (tar layout, metadata and GPT rules) or a metadata.json (its rules)
against the COSI specification; exits 0 when valid, 5 when not.

options:
  --deep                    also hash and decode every image and check its size (reads the whole file)
  --json                    the report as JSON
  --max-metadata-size N     refuse a larger metadata.json before reading it (default 4M)
  -q, --quiet               no progress lines
  -h, --help
`;

const REFRAME_USAGE = `usage: cosi-pack reframe IN.cosi -o OUT.cosi [--frame-size SIZE] [--level N] [--window-log N]

Re-encodes every image of IN.cosi, checking its SHA-384 as it decodes, as independent zstd frames
with a seek table (or as one frame again, without --frame-size), and writes OUT.cosi with fresh
hashes; the rest of metadata.json is kept. Needs free space for the largest image, uncompressed.

options:
  -o, --output FILE         where to write the new COSI file (written to a temporary name, then renamed)
  --frame-size SIZE         uncompressed bytes per frame (K, M, G; 64K to 1G); 64M is the recommended size
                            (default: one frame per image)
  --level N                 zstd level, 1-22 (default 9)
  --window-log N            zstd window log, 10-31 (default 27)
  -q, --quiet               no progress lines
  -h, --help
`;

const USAGE = `usage: cosi-pack DISK.raw -o IMAGE.cosi [options]
       cosi-pack reframe IN.cosi -o OUT.cosi [--frame-size SIZE] [--level N] [--window-log N]
       cosi-pack validate PATH [--deep] [--json] [--max-metadata-size N]
                                 (PATH: a .cosi file or a metadata.json)

options:
  -o, --output FILE         where to write the COSI file (written to a temporary name, then renamed)
  --os-release FILE         /etc/os-release contents (default: read from the ext2/3/4 root with debugfs)
  --packages FILE           package list: 'NAME VERSION RELEASE ARCH' lines (rpm -qa --queryformat) or JSON
  --arch ARCH               x86_64 or arm64 (default: from the root partition type, else this machine)
  --bootloader FILE|TYPE    'grub' (default), or a JSON file with the whole bootloader object
  --mount SEL=PATH          mount point for a partition number or DPS type name (repeatable; PATH '' drops it)
  --shrink                  shrink ext2/3/4 filesystems that cover their partition (resize2fs -M on a copy)
  --level N                 zstd level, 1-22 (default 9)
  --window-log N            zstd window log, 10-31 (default 27, as the reference writer's --long=27)
  --frame-size SIZE         write each partition image as independent zstd frames of SIZE uncompressed
                            bytes (K, M, G; 64K to 1G) ending in a seek table (zstd's seekable format),
                            for parallel decode and resume; 64M is the recommended size (default: one frame)
  --no-skippable            do not put the COSI id in a skippable frame before each image
  --id UUID                 the COSI id, 8-4-4-4-12 hex digits (default: random)
  -q, --quiet               no progress lines
  -h, --help

validate options (see cosi-pack validate --help):
  --deep                    also hash and decode every image and check its size (reads the whole file)
  --json                    the report as JSON
  --max-metadata-size N     refuse a larger metadata.json before reading it (default 4M)
`;

/** The summary's note when the output path held a file. */
const REPLACED = '; replaced the file that was there';

/** cosi-pack's own flags; -q and -h come with parseCommand. */
const FLAGS = {
  output: { type: 'string', short: 'o' },
  'os-release': { type: 'string' },
  packages: { type: 'string' },
  arch: { type: 'string' },
  bootloader: { type: 'string' },
  mount: { type: 'string', multiple: true },
  shrink: { type: 'boolean' },
  level: { type: 'string' },
  'window-log': { type: 'string' },
  'no-skippable': { type: 'boolean' },
  'frame-size': { type: 'string' },
  id: { type: 'string' },
} as const;

const REFRAME_FLAGS = {
  output: { type: 'string', short: 'o' },
  'frame-size': { type: 'string' },
  level: { type: 'string' },
  'window-log': { type: 'string' },
} as const;

const VALIDATE_FLAGS = {
  json: { type: 'boolean' },
  deep: { type: 'boolean' },
  'max-metadata-size': { type: 'string' },
} as const;

/** What `validate` looked at, in the words of its last line and its JSON `checks`. */
const CHECKS = {
  metadata: 'metadata.json rules',
  structure: 'tar layout, metadata and GPT rules',
  images: "every image's SHA-384, zstd stream and size",
} as const;

/** A metadata.json starts with '{' (after white space or a byte order mark); a file named *.json is taken as one whatever it holds. */
function looksLikeJson(head: Buffer): boolean {
  return /^(\uFEFF)?\s*\{/.test(head.toString('utf8'));
}

/**
 * A file given to validate as a metadata.json that is none (a package.json, an
 * HTML page named *.json) is no COSI file either: say both, and what it looks
 * like when that is known, else why it is no metadata.json.
 */
function parseJsonArgument(path: string, bytes: Buffer, maxMetadataBytes: number): CosiMetadata {
  try {
    return parseMetadata(bytes, maxMetadataBytes);
  } catch (err) {
    if (!isCosiError(err, 'COSI_ERR_METADATA')) throw err;
    const kind = sniff(bytes);
    const why = kind === 'not a COSI archive' || kind === 'a JSON document' ? err.message : kind;
    throw new CosiError('COSI_ERR_NOT_COSI', `${path} is not a COSI archive nor a valid COSI metadata.json (${why}): give a .cosi file or the metadata.json of one`, { cause: err });
  }
}

async function validate(args: string[]): Promise<number> {
  const name = { prog: 'cosi-pack', command: 'validate' };
  const parsed = parseCommand(args, VALIDATE_FLAGS, VALIDATE_USAGE, name);
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const path = positionals[0];
  if (!path || positionals.length > 1) throw usageError(`validate takes one PATH (a .cosi file or a metadata.json), got ${positionals.length}`, name);
  const maxMetadataBytes = sizeOption('max-metadata-size', values['max-metadata-size'], METADATA_SIZE_OPTION.min, METADATA_SIZE_OPTION.max) ?? MAX_METADATA_BYTES;
  const src = new FileSource(path);
  let result: ValidationResult;
  const checks: Array<keyof typeof CHECKS> = [];
  let deep: DeepReport | undefined;
  try {
    const head = await src.read(0, 512);
    if (!startsLikeCosi(head) && !looksLikeJson(head) && !path.endsWith('.json')) {
      const kind = sniff(head);
      throw new CosiError('COSI_ERR_NOT_COSI', `${path} is not a COSI archive${kind === 'not a COSI archive' ? '' : ` (${kind})`} nor a metadata.json: a COSI file starts with a cosi-marker tar entry`);
    }
    if (startsLikeCosi(head)) {
      const check = await checkArchive(src, { maxMetadataBytes });
      result = check.result;
      checks.push('structure');
      if (values.deep) {
        deep = await checkImages(check, values.quiet ? undefined : (image) => process.stderr.write(`cosi-pack: decoding ${image}\n`));
        checks.push('images');
        result.errors.push(...deep.errors);
        result.valid = result.errors.length === 0;
      }
    } else {
      if (values.deep) throw new CosiError('COSI_ERR_USAGE', `--deep needs a .cosi file: ${path} holds no images`);
      const size = await src.size();
      if (size > maxMetadataBytes) throw metadataTooLarge(`${path}: `, size, maxMetadataBytes);
      checks.push('metadata');
      result = validateCosi({ metadata: parseJsonArgument(path, await src.read(0, size), maxMetadataBytes) });
    }
  } catch (err) {
    // --json promises JSON on stdout: a file that cannot be checked at all is an invalid report, not a bare error.
    if (!values.json || !(err instanceof CosiError) || err.errorClass === 'usage' || err.errorClass === 'internal') throw err;
    process.stdout.write(JSON.stringify({ valid: false, errors: [{ field: 'file', rule: err.code, message: err.message }], warnings: [], checks }, null, 2) + '\n');
    return err.exitCode;
  } finally {
    await src.close();
  }
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...result, checks, ...(deep ? { decoded: deep.decoded, unverified: deep.unhashed, framed: deep.framed } : {}) }, null, 2) + '\n');
  } else {
    for (const line of formatIssues(result)) process.stdout.write(line + '\n');
    const ran = checks.map((k) => CHECKS[k]).join('; ');
    const skipped = checks.includes('structure') && !deep ? '; images not decoded: add --deep' : '';
    const unhashed = deep && deep.unhashed.length > 0 ? `; ${deep.unhashed.length} image(s) without a SHA-384 (COSI 1.0) only decoded and sized: ${deep.unhashed.join(', ')}` : '';
    const framed = deep && deep.framed.length > 0 ? `; ${deep.framed.length} framed image(s), each seek table held against its frames` : '';
    process.stdout.write(result.valid ? `${path}: valid COSI ${result.version ?? ''} (checked: ${ran}${skipped}${unhashed}${framed})\n` : `${path}: INVALID (${result.errors.length} error(s); checked: ${ran}${skipped})\n`);
  }
  return result.valid ? 0 : 5;
}

async function pack(args: string[]): Promise<number> {
  const name = { prog: 'cosi-pack' };
  const parsed = parseCommand(args, FLAGS, USAGE, name);
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const typo = commandTypo(positionals[0], ['validate', 'reframe'], positionals.length > 1, 'cosi-pack');
  if (typo) throw typo;
  const disk = positionals[0];
  if (!disk || positionals.length > 1) throw usageError(`expected one DISK image, got ${positionals.length}`, name);
  if (!values.output) throw usageError('missing -o IMAGE.cosi', name);
  const problem = await outputProblem(values.output, disk, 'DISK');
  if (problem) throw usageError(problem, name);
  if (values.id !== undefined && !UUID_RE.test(values.id)) {
    throw usageError(`--id must be a UUID (8-4-4-4-12 hex digits, e.g. 0f8fad5b-d9cb-469f-a165-70867728950e), got ${JSON.stringify(values.id)}`, name);
  }
  const mounts: Record<string, string> = {};
  for (const m of values.mount ?? []) {
    const eq = m.indexOf('=');
    if (eq <= 0) throw new CosiError('COSI_ERR_USAGE', `--mount ${m}: expected SEL=PATH, e.g. 3=/srv or srv=/data`);
    const path = m.slice(eq + 1);
    if (path !== '' && !path.startsWith('/')) throw new CosiError('COSI_ERR_USAGE', `--mount ${m}: the mount point must be absolute`);
    mounts[m.slice(0, eq)] = path;
  }
  let bootloader: Bootloader | undefined;
  if (values.bootloader === 'grub') bootloader = { type: 'grub' };
  else if (values.bootloader === 'systemd-boot') throw new CosiError('COSI_ERR_USAGE', '--bootloader systemd-boot needs its entries: give a JSON file with the whole bootloader object');
  else if (values.bootloader !== undefined) {
    const takes = "give 'grub' or a JSON file holding the whole bootloader object";
    const text = await readFlagFile('--bootloader', values.bootloader, takes);
    try {
      bootloader = JSON.parse(text) as Bootloader;
    } catch (err) {
      throw new CosiError('COSI_ERR_USAGE', `--bootloader ${values.bootloader}: not valid JSON (${oneLine(err)}); ${takes}`);
    }
  }
  const osRelease = values['os-release'] === undefined ? undefined : await readFlagFile('--os-release', values['os-release']);
  const log = values.quiet ? undefined : (line: string) => process.stderr.write(`cosi-pack: ${line}\n`);
  const res = await packDisk({
    disk,
    output: values.output,
    osRelease,
    packages: values.packages ? await readPackageFile(values.packages) : undefined,
    arch: values.arch,
    bootloader,
    mounts,
    shrink: values.shrink,
    level: intOption('level', values.level, 1, 22),
    windowLog: intOption('window-log', values['window-log'], 10, 31),
    skippableId: !values['no-skippable'],
    frameSize: frameSizeOption(values['frame-size']),
    id: values.id,
    log,
    warn: (line) => process.stderr.write(`cosi-pack: warning: ${line}\n`),
  });
  // The writer must never emit something our own validator rejects.
  const check = validateCosi({ metadata: res.metadata });
  if (!check.valid) throw new CosiError('COSI_ERR_INTERNAL', `packed metadata failed validation: ${formatIssues(check)[0]}`);
  log?.(`wrote ${res.output} (${res.size} bytes, ${res.regions.length} regions${res.replaced ? REPLACED : ''})`);
  return 0;
}

function frameSizeOption(value: string | undefined): number | undefined {
  return sizeOption('frame-size', value, MIN_FRAME_SIZE, 1 << 30);
}

async function reframeCommand(args: string[]): Promise<number> {
  const name = { prog: 'cosi-pack', command: 'reframe' };
  const parsed = parseCommand(args, REFRAME_FLAGS, REFRAME_USAGE, name);
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const input = positionals[0];
  if (!input || positionals.length > 1) throw usageError(`reframe takes one IN.cosi, got ${positionals.length}`, name);
  if (!values.output) throw usageError('missing -o OUT.cosi', name);
  const problem = await outputProblem(values.output, input, 'IN.cosi');
  if (problem) throw usageError(problem, name);
  const log = values.quiet ? undefined : (line: string) => process.stderr.write(`cosi-pack: ${line}\n`);
  const res = await reframe({
    input,
    output: values.output,
    frameSize: frameSizeOption(values['frame-size']),
    level: intOption('level', values.level, 1, 22),
    windowLog: intOption('window-log', values['window-log'], 10, 31),
    log,
  });
  log?.(`wrote ${values.output} (${res.size} bytes, ${res.images} images${res.replaced ? REPLACED : ''})`);
  return 0;
}

await runMain('cosi-pack', async () => {
  const args = process.argv.slice(2);
  if (args[0] === 'validate') return validate(args.slice(1));
  if (args[0] === 'reframe') return reframeCommand(args.slice(1));
  if (args.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  return pack(args);
});
