/**
 * Every error a client sees is one JSON shape, `{ error: { code, message } }`,
 * with the status that fits. Format and selection problems keep their
 * CosiError code so a client can branch on the same codes as the CLI.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { isCosiError, oneLine, type ErrorCode } from '../../shared/errors.js';
import { HttpError } from '../errors.js';

const STATUS_OF_CODE: Partial<Record<ErrorCode, number>> = {
  COSI_ERR_SELECTOR: 404,
  COSI_ERR_USAGE: 400,
  COSI_ERR_NOT_COSI: 422,
  COSI_ERR_INVALID: 422,
  COSI_ERR_METADATA: 422,
  COSI_ERR_TAR: 422,
  COSI_ERR_TRUNCATED: 422,
  COSI_ERR_IO: 500,
};

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** The error body written straight to a response (paths that answer without the router), with its exact length. */
export function sendJsonError(res: ServerResponse, status: number, code: string, message: string, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(errorBody(code, message));
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Status, headers and body for anything thrown by a handler. */
export function describeError(err: unknown): { status: number; headers: Record<string, string>; body: ErrorBody } {
  if (err instanceof HttpError) return { status: err.status, headers: err.headers, body: errorBody(err.code, err.message) };
  if (isCosiError(err)) return { status: STATUS_OF_CODE[err.code] ?? 500, headers: {}, body: errorBody(err.code, oneLine(err)) };
  return { status: 500, headers: {}, body: errorBody('INTERNAL', 'internal server error') };
}
