/**
 * The server's one error type: an HTTP status and a stable code beside the
 * message. A leaf, so the catalog (403, 404, 503 for a full descriptor
 * table) and the HTTP layer throw the same thing; http/errors.ts turns it,
 * a CosiError or anything else into the JSON body a client sees.
 */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string): HttpError => new HttpError(404, 'NOT_FOUND', what);
