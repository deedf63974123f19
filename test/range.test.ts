import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  coalesce,
  etagMatches,
  formatContentRange,
  ifRangeAllows,
  isStrongEtag,
  parseContentRange,
  parseHttpDate,
  parseRangeHeader,
  parseUnsatisfiedContentRange,
  unsatisfiedContentRange,
  type RangeResult,
} from '../shared/transport/range.js';

const r = (...pairs: Array<[number, number]>): RangeResult => ({ kind: 'ranges', ranges: pairs.map(([start, end]) => ({ start, end })) });
const IGNORE: RangeResult = { kind: 'ignore' };
const NONE: RangeResult = { kind: 'none' };
const UNSAT: RangeResult = { kind: 'unsatisfiable' };

describe('parseRangeHeader (RFC 9110 §14)', () => {
  const size = 10_000;
  const cases: Array<[string | undefined, RangeResult, string]> = [
    [undefined, NONE, 'no header'],
    ['', NONE, 'empty header'],
    ['bytes=0-499', r([0, 499]), 'first 500 bytes'],
    ['bytes=500-999', r([500, 999]), 'second 500 bytes'],
    ['bytes=-500', r([9500, 9999]), 'suffix: last 500 bytes'],
    ['bytes=9500-', r([9500, 9999]), 'open-ended'],
    ['bytes=0-0', r([0, 0]), 'first byte'],
    ['bytes=9999-9999', r([9999, 9999]), 'last byte'],
    ['bytes=0-0,-1', r([0, 0], [9999, 9999]), 'first and last byte, order kept'],
    ['bytes=500-600, 601-999', r([500, 600], [601, 999]), 'two ranges are not coalesced'],
    ['bytes=500-700,601-999', r([500, 700], [601, 999]), 'two overlapping ranges are kept as asked'],
    ['bytes=9000-99999', r([9000, 9999]), 'end clamped to size-1'],
    ['bytes=0-99999999999999999999999', r([0, 9999]), 'huge end clamped'],
    ['bytes=-20000', r([0, 9999]), 'suffix longer than the file selects all of it'],
    ['bytes=10000-', UNSAT, 'start at size'],
    ['bytes=10000-10010', UNSAT, 'start past the end'],
    ['bytes=99999999999999999999999-', UNSAT, 'huge start'],
    ['bytes=-0', UNSAT, 'zero-length suffix'],
    ['bytes=20000-30000, 0-9', r([0, 9]), 'unsatisfiable range dropped, others kept'],
    ['bytes=20000-30000,-0', UNSAT, 'every range unsatisfiable'],
    ['BYTES=0-1', r([0, 1]), 'unit is case-insensitive'],
    ['bytes=0-1 , 4-5', r([0, 1], [4, 5]), 'OWS around commas'],
    ['bytes=0-1,\t4-5', r([0, 1], [4, 5]), 'tab as OWS'],
    ['bytes=0-1,,4-5', r([0, 1], [4, 5]), 'empty list element skipped'],
    ['  bytes=0-1  ', r([0, 1]), 'surrounding whitespace'],
    ['bytes=5-4', IGNORE, 'last < first'],
    ['bytes=100000000000000000001-100000000000000000000', IGNORE, 'last < first beyond 2^53'],
    ['bytes=a-b', IGNORE, 'not digits'],
    ['bytes=1-2-3', IGNORE, 'two dashes'],
    ['bytes=-', IGNORE, 'dash alone'],
    ['bytes=+1-2', IGNORE, 'sign'],
    ['bytes=0x10-0x20', IGNORE, 'hex'],
    ['bytes=1.5-2', IGNORE, 'fraction'],
    ['bytes=0 -1', IGNORE, 'space inside a range-spec'],
    ['bytes=', IGNORE, 'no ranges'],
    ['bytes=,', IGNORE, 'only empty elements'],
    ['bytes 0-1', IGNORE, 'no equals sign'],
    ['items=0-1', IGNORE, 'unknown unit'],
    ['bytes=0-1,x', IGNORE, 'one invalid spec spoils the header'],
  ];
  for (const [header, want, what] of cases) {
    test(`${what}: ${JSON.stringify(header)}`, () => {
      assert.deepEqual(parseRangeHeader(header, size), want);
    });
  }

  test('an empty representation satisfies no range', () => {
    assert.deepEqual(parseRangeHeader('bytes=0-', 0), UNSAT);
    assert.deepEqual(parseRangeHeader('bytes=-5', 0), UNSAT);
    assert.deepEqual(parseRangeHeader('bytes=0-0', 0), UNSAT);
  });

  test('more ranges than the cap: ignored (a plain 200)', () => {
    assert.deepEqual(parseRangeHeader('bytes=0-1,2-3,4-5', size, { maxRanges: 2 }), IGNORE);
    assert.deepEqual(parseRangeHeader('bytes=0-1,10-11', size, { maxRanges: 2 }), r([0, 1], [10, 11]));
    const many = 'bytes=' + Array.from({ length: 65 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',');
    assert.deepEqual(parseRangeHeader(many, size), IGNORE, 'default cap is 64');
  });

  test('more than two ranges: overlapping and adjacent ones coalesced and sorted', () => {
    assert.deepEqual(parseRangeHeader('bytes=500-600,0-100,90-200', size), r([0, 200], [500, 600]));
    assert.deepEqual(parseRangeHeader('bytes=0-9,10-19,20-29', size), r([0, 29]), 'adjacent');
    assert.deepEqual(parseRangeHeader('bytes=0-9,20-29,40-49', size), r([0, 9], [20, 29], [40, 49]), 'disjoint kept');
    assert.deepEqual(parseRangeHeader('bytes=0-,0-,0-', size), r([0, 9999]), 'the same range thrice');
    assert.deepEqual(parseRangeHeader('bytes=-100,9000-,0-0', size), r([0, 0], [9000, 9999]), 'suffix merged with open-ended');
  });

  test('coalesce does not mutate its input', () => {
    const input = [{ start: 5, end: 9 }, { start: 0, end: 5 }];
    assert.deepEqual(coalesce(input), [{ start: 0, end: 9 }]);
    assert.deepEqual(input, [{ start: 5, end: 9 }, { start: 0, end: 5 }]);
  });

  test('property: never throws; every range lies within [0, size) and start <= end', () => {
    const spec = fc.oneof(
      fc.tuple(fc.nat(2000), fc.option(fc.nat(2000))).map(([a, b]) => `${a}-${b ?? ''}`),
      fc.nat(2000).map((n) => `-${n}`),
      fc.string({ maxLength: 8 }),
    );
    const header = fc.oneof(
      fc.tuple(fc.array(spec, { maxLength: 8 }), fc.constantFrom(',', ', ', ' ,', ',\t')).map(([specs, sep]) => `bytes=${specs.join(sep)}`),
      fc.string({ maxLength: 40 }),
      fc.constant(undefined),
    );
    fc.assert(
      fc.property(header, fc.nat(1500), fc.option(fc.integer({ min: 1, max: 10 }), { nil: undefined }), (h, size, maxRanges) => {
        const res = parseRangeHeader(h, size, maxRanges === undefined ? {} : { maxRanges });
        if (res.kind !== 'ranges') return;
        assert.ok(res.ranges.length > 0);
        if (maxRanges !== undefined) assert.ok(res.ranges.length <= maxRanges);
        for (const { start, end } of res.ranges) {
          assert.ok(Number.isInteger(start) && Number.isInteger(end));
          assert.ok(start >= 0 && start <= end && end < size, `${h} on ${size}: ${start}-${end}`);
        }
        if (res.ranges.length > 2) {
          for (let i = 1; i < res.ranges.length; i++) assert.ok(res.ranges[i]!.start > res.ranges[i - 1]!.end + 1, 'coalesced');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('Content-Range', () => {
  test('format', () => {
    assert.equal(formatContentRange(0, 499, 1234), 'bytes 0-499/1234');
    assert.equal(unsatisfiedContentRange(1234), 'bytes */1234');
  });

  test('parse', () => {
    assert.deepEqual(parseContentRange('bytes 0-499/1234'), { start: 0, end: 499, size: 1234 });
    assert.deepEqual(parseContentRange('bytes 21010-47021/47022'), { start: 21010, end: 47021, size: 47022 });
    assert.deepEqual(parseContentRange('bytes 0-499/*'), { start: 0, end: 499, size: undefined });
    assert.deepEqual(parseContentRange('Bytes 1-1/2'), { start: 1, end: 1, size: 2 });
    for (const bad of [undefined, '', 'bytes */1234', 'bytes 5-4/10', 'bytes 0-10/10', 'bytes 0-1', 'items 0-1/2', 'bytes=0-1/2', 'bytes -1-2/3', 'bytes 0-99999999999999999999/*']) {
      assert.equal(parseContentRange(bad), undefined, String(bad));
    }
    assert.equal(parseUnsatisfiedContentRange('bytes */1234'), 1234);
    assert.equal(parseUnsatisfiedContentRange('bytes 0-1/2'), undefined);
    assert.equal(parseUnsatisfiedContentRange(undefined), undefined);
  });

  test('round trip', () => {
    fc.assert(
      fc.property(fc.nat(1e12), fc.nat(1e6), fc.nat(1e6), (start, len, extra) => {
        const end = start + len;
        assert.deepEqual(parseContentRange(formatContentRange(start, end, end + 1 + extra)), { start, end, size: end + 1 + extra });
      }),
    );
  });
});

describe('entity-tags', () => {
  const cases: Array<[string, string, boolean, boolean, string]> = [
    // header, etag, weak result, strong result, what
    ['"abc"', '"abc"', true, true, 'identical strong tags'],
    ['W/"abc"', '"abc"', true, false, 'weak in the header'],
    ['"abc"', 'W/"abc"', true, false, 'weak current tag'],
    ['W/"abc"', 'W/"abc"', true, false, 'both weak: never a strong match'],
    ['"abc"', '"abd"', false, false, 'different tags'],
    ['"x", "abc", "y"', '"abc"', true, true, 'in a list'],
    ['"x",W/"abc"', '"abc"', true, false, 'weak in a list'],
    ['"a,b"', '"a,b"', true, true, 'a comma inside the opaque tag'],
    ['"a", "b"', '"a,b"', false, false, 'a list is not one tag with a comma'],
    ['*', '"abc"', true, false, '* matches any current entity for If-None-Match only'],
    ['abc', '"abc"', false, false, 'unquoted'],
    ['"abc', '"abc"', false, false, 'unterminated'],
    ['"abc" junk', '"abc"', false, false, 'trailing junk'],
    ['', '"abc"', false, false, 'empty header'],
    ['"abc"', 'abc', false, false, 'malformed current tag'],
  ];
  for (const [h, etag, weak, strong, what] of cases) {
    test(what, () => {
      assert.equal(etagMatches(h, etag, { weak: true }), weak, 'weak comparison');
      assert.equal(etagMatches(h, etag, { weak: false }), strong, 'strong comparison');
    });
  }
  test('isStrongEtag', () => {
    assert.equal(isStrongEtag('"6560ab-100000"'), true);
    assert.equal(isStrongEtag('W/"6560ab-100000"'), false);
    assert.equal(isStrongEtag(undefined), false);
    assert.equal(isStrongEtag('nope'), false);
  });
});

describe('HTTP dates', () => {
  const when = Date.UTC(1994, 10, 6, 8, 49, 37);
  test('the three forms of RFC 9110 §5.6.7', () => {
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), when);
    assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), when);
    assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), when);
  });
  test('other strings are not dates', () => {
    for (const bad of ['2024-01-01', 'yesterday', 'Sun, 06 Nov 1994 08:49:37 PST', '"etag"', '']) assert.equal(parseHttpDate(bad), undefined, bad);
  });
});

describe('ifRangeAllows (RFC 9110 §13.1.5)', () => {
  const etag = '"5f3c-6560ab"';
  const lastModified = new Date(Date.UTC(2026, 10, 25, 12, 0, 0, 250));
  const lmText = 'Wed, 25 Nov 2026 12:00:00 GMT';
  const later = new Date(lastModified.getTime() + 5000);

  test('no If-Range: ranges allowed', () => {
    assert.equal(ifRangeAllows(undefined, etag, lastModified, later), true);
    assert.equal(ifRangeAllows('', etag, lastModified, later), true);
  });
  test('entity-tags: strong comparison only', () => {
    assert.equal(ifRangeAllows(etag, etag, lastModified, later), true);
    assert.equal(ifRangeAllows('"other"', etag, lastModified, later), false);
    assert.equal(ifRangeAllows(`W/${etag}`, etag, lastModified, later), false, 'weak validator in If-Range');
    assert.equal(ifRangeAllows(etag, `W/${etag}`, lastModified, later), false, 'weak current ETag');
    assert.equal(ifRangeAllows(etag, undefined, lastModified, later), false, 'no current ETag');
    assert.equal(ifRangeAllows(`${etag}, "x"`, etag, lastModified, later), false, 'If-Range takes one tag, not a list');
  });
  test('HTTP-date: exact match with a strong Last-Modified', () => {
    assert.equal(ifRangeAllows(lmText, etag, lastModified, later), true);
    assert.equal(ifRangeAllows('Wednesday, 25-Nov-26 12:00:00 GMT', etag, lastModified, later), true, 'rfc850 form');
    assert.equal(ifRangeAllows('Wed, 25 Nov 2026 12:00:01 GMT', etag, lastModified, later), false, 'later date');
    assert.equal(ifRangeAllows('Wed, 25 Nov 2026 11:59:59 GMT', etag, lastModified, later), false, 'earlier date');
    assert.equal(ifRangeAllows(lmText, etag, undefined, later), false, 'no Last-Modified');
    assert.equal(ifRangeAllows('garbage', etag, lastModified, later), false, 'not a date');
  });
  test('HTTP-date within the same second as the change is weak: no match', () => {
    assert.equal(ifRangeAllows(lmText, etag, lastModified, new Date(lastModified.getTime() + 100)), false);
    assert.equal(ifRangeAllows(lmText, etag, lastModified, new Date(Date.UTC(2026, 10, 25, 12, 0, 1))), true, 'once the second has passed');
  });
});
