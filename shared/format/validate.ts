/**
 * Every MUST of the COSI spec that can be checked from metadata.json, the tar
 * index and (optionally) the parsed primary GPT. It works on `unknown` input
 * so it can report on documents parseMetadata would still accept and on ones
 * it would not; it never throws, and collects every issue instead of stopping
 * at the first, so a writer gets one complete report.
 *
 * Unknown fields are never reported: the spec requires readers to ignore
 * them. Fields a revision did not have yet are not checked against it, but a
 * document that has them declares too old a version ('version-too-old').
 */
import type { TarEntry } from './tar.js';
import type { Gpt } from '../disk/gpt.js';
import { Checker, isObject, show, type ValidationResult } from './validate-checker.js';
import { checkMetadata } from './validate-metadata.js';
import { checkGpt, checkTar } from './validate-layout.js';

export { formatIssues, type ValidationIssue, type ValidationResult } from './validate-checker.js';

export interface ValidateInput {
  metadata: unknown;
  entries?: TarEntry[];
  gpt?: Gpt;
}

function run(c: Checker, input: ValidateInput): string | undefined {
  const doc = input.metadata;
  if (!isObject(doc)) {
    c.error('metadata', 'metadata-object', `must be a JSON object, got ${show(doc)}`);
    return undefined;
  }
  const { stop, version } = checkMetadata(c, doc);
  if (stop) return version;
  if (input.entries) checkTar(c, input.entries);
  if (input.gpt) checkGpt(c, input.gpt);
  return version;
}

export interface ValidateOptions {
  /** For a reader (cosi-fetch): rules that bind only the writer are warnings (see Checker.reader). */
  reader?: boolean;
}

/** Check a metadata document (and optionally its tar index and GPT) against the spec. Never throws. */
export function validateCosi(input: ValidateInput, opts: ValidateOptions = {}): ValidationResult {
  const c = new Checker(opts.reader);
  let version: string | undefined;
  try {
    version = run(c, input);
  } catch (err) {
    // A bug here must not hide the report gathered so far.
    c.error('metadata', 'internal', `could not be fully validated: ${err instanceof Error ? err.message : String(err)}`);
  }
  const result: ValidationResult = { valid: c.errors.length === 0, errors: c.errors, warnings: c.warnings };
  if (version !== undefined) result.version = version;
  return result;
}
