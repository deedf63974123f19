/**
 * The validation report (ValidationIssue, ValidationResult, formatIssues) and
 * the Checker the rules share: it collects issues, reads typed members of
 * `unknown` documents, and keeps what the metadata rules found (images,
 * regions, disk geometry) for the tar and GPT rules that run after them.
 */

export interface ValidationIssue {
  /** JSON path like 'disk.gptRegions[2].number', or 'tar[0]' for a tar entry. */
  field: string;
  /** Short stable id like 'sha384-format'. */
  rule: string;
  /** One line naming the field and the rule; starts with `field`. */
  message: string;
}

export interface ValidationResult {
  valid: boolean;
  version?: string;
  errors: ValidationIssue[];
  warnings: ValidationIssue[];
}

/** One line per issue, errors first: 'error: disk.lbaSize: lba-size: must be 512 or 4096, got 1024'. */
export function formatIssues(result: ValidationResult): string[] {
  const line = (kind: string, i: ValidationIssue): string => {
    const text = i.message.startsWith(`${i.field} `) ? i.message.slice(i.field.length + 1) : i.message;
    return `${kind}: ${i.field}: ${i.rule}: ${text}`;
  };
  return [...result.errors.map((i) => line('error', i)), ...result.warnings.map((i) => line('warning', i))];
}

/** Latest minor revision of major 1 that we know; newer minors are validated as this one. */
export const LATEST_MINOR = 2;

export type Obj = Record<string, unknown>;
export type ImageObj = Obj & { path: string };

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** A short rendering of a bad value for messages; documents can be huge. */
export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** An image reference found in the metadata, kept for the tar and GPT checks. */
export interface ImageRef {
  field: string;
  image: ImageObj;
}

export interface RegionRef {
  index: number;
  type: unknown;
  number?: number;
  image?: ImageObj;
}

export interface FilesystemRef {
  index: number;
  image?: ImageObj;
  verityImage?: ImageObj;
  partType?: string;
}

export class Checker {
  /**
   * Reading, not writing: rules that bind a writer but do not change how the
   * bytes are read (a version older than the fields the document uses) are
   * warnings for a reader, errors for `cosi-pack validate` and the catalog.
   */
  constructor(readonly reader = false) {}

  readonly errors: ValidationIssue[] = [];
  readonly warnings: ValidationIssue[] = [];
  /** Minor revision the document is validated as. */
  minor = LATEST_MINOR;
  readonly images: ImageRef[] = [];
  regions: RegionRef[] | undefined;
  filesystems: FilesystemRef[] = [];
  diskSize: number | undefined;
  lbaSize: number | undefined;

  error(field: string, rule: string, text: string): void {
    this.errors.push({ field, rule, message: `${field} ${text}` });
  }

  warn(field: string, rule: string, text: string): void {
    this.warnings.push({ field, rule, message: `${field} ${text}` });
  }

  /** An error for a writer, a warning for a reader (see `reader`). */
  writerError(field: string, rule: string, text: string): void {
    if (this.reader) this.warn(field, rule, text);
    else this.error(field, rule, text);
  }

  since(minor: number): boolean {
    return this.minor >= minor;
  }

  /** The member as it is; reports 'required' when it is missing. */
  need(o: Obj, key: string, field: string): unknown {
    const v = o[key];
    if (v === undefined) this.error(field, 'required', 'is required');
    return v;
  }

  /** Fetch a member that must be a string; reports 'required'/'type'. */
  str(o: Obj, key: string, field: string, required = true): string | undefined {
    return this.member(o, key, field, required, isString, 'a string');
  }

  obj(o: Obj, key: string, field: string, required = true): Obj | undefined {
    return this.member(o, key, field, required, isObject, 'an object');
  }

  arr(o: Obj, key: string, field: string, required = true): unknown[] | undefined {
    return this.member(o, key, field, required, Array.isArray, 'an array');
  }

  /** A required top-level object added in 1.`minor`: an unknown field (so unchecked) before that. */
  section(doc: Obj, key: string, minor: number): Obj | undefined {
    return this.since(minor) ? this.obj(doc, key, key) : undefined;
  }

  /** Runs `check` on each item that is an object; the others are reported as not being `what`. */
  eachObject(items: unknown[], field: string, what: string, check: (o: Obj, field: string, index: number) => void): void {
    items.forEach((item, i) => {
      const itemField = `${field}[${i}]`;
      if (isObject(item)) check(item, itemField, i);
      else this.error(itemField, 'type', `must be ${what}, got ${show(item)}`);
    });
  }

  private member<T>(o: Obj, key: string, field: string, required: boolean, is: (v: unknown) => v is T, what: string): T | undefined {
    const v = required ? this.need(o, key, field) : o[key];
    if (v === undefined) return undefined;
    if (!is(v)) {
      this.error(field, 'type', `must be ${what}, got ${show(v)}`);
      return undefined;
    }
    return v;
  }
}
