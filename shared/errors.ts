/**
 * One error family for the whole project. Every failure that can reach a user
 * carries a stable `code` (like undici's UND_ERR_*); the code's class decides
 * the CLI exit status, so scripts can tell a bad URL from a corrupt image.
 */

export type ErrorClass = 'usage' | 'network' | 'integrity' | 'format' | 'io' | 'unsupported' | 'internal';

export const EXIT_CODES: Readonly<Record<ErrorClass, number>> = {
  internal: 1,
  usage: 2,
  network: 3,
  integrity: 4,
  format: 5,
  io: 6,
  unsupported: 7,
};

const CODES = {
  COSI_ERR_USAGE: 'usage',
  COSI_ERR_SELECTOR: 'usage',
  COSI_ERR_NETWORK: 'network',
  COSI_ERR_HTTP_STATUS: 'network',
  COSI_ERR_TIMEOUT: 'network',
  COSI_ERR_REDIRECT: 'network',
  COSI_ERR_TLS: 'network',
  COSI_ERR_RANGE_UNSUPPORTED: 'network',
  COSI_ERR_HASH_MISMATCH: 'integrity',
  COSI_ERR_SIZE_MISMATCH: 'integrity',
  COSI_ERR_SOURCE_CHANGED: 'integrity',
  COSI_ERR_TRUNCATED: 'integrity',
  COSI_ERR_VERIFY_AFTER: 'integrity',
  /** An image without a SHA-384: required since COSI 1.1, and for 1.0 written only when allowed. */
  COSI_ERR_UNVERIFIED: 'integrity',
  COSI_ERR_NOT_COSI: 'format',
  COSI_ERR_TAR: 'format',
  COSI_ERR_METADATA: 'format',
  COSI_ERR_INVALID: 'format',
  COSI_ERR_GPT: 'format',
  COSI_ERR_ZSTD: 'format',
  COSI_ERR_IO: 'io',
  COSI_ERR_DEVICE: 'io',
  COSI_ERR_UNSUPPORTED: 'unsupported',
  COSI_ERR_INTERNAL: 'internal',
} as const satisfies Record<string, ErrorClass>;

export type ErrorCode = keyof typeof CODES;

export class CosiError extends Error {
  override readonly name = 'CosiError';
  readonly code: ErrorCode;
  /** Structured details for --json output and logs; never needed to understand `message`. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }

  get errorClass(): ErrorClass {
    return CODES[this.code];
  }

  get exitCode(): number {
    return EXIT_CODES[CODES[this.code]];
  }
}

/** The class of a stable code (as stored in a record or a log), or undefined for a code that is not ours. */
export function errorClassOf(code: string): ErrorClass | undefined {
  return Object.hasOwn(CODES, code) ? CODES[code as ErrorCode] : undefined;
}

export function isCosiError(err: unknown, code?: ErrorCode): err is CosiError {
  return err instanceof CosiError && (code === undefined || err.code === code);
}

/** Exit status for anything thrown: our own errors by class, everything else "internal". */
export function exitCodeOf(err: unknown): number {
  return err instanceof CosiError ? err.exitCode : EXIT_CODES.internal;
}

/** One line for a terminal: the message, flattened, never a stack. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}
