/**
 * Payload filters (API.md §7) that are valid by construction: `match`,
 * `range` and `filter` check every rule the server checks and throw a
 * `RangeError` (or `TypeError`) otherwise, and the objects they return are
 * frozen, so a `Filter` always serialises to a filter the server accepts.
 *
 *     filter({
 *       must: [match("tier", "gold"), range("price", { gte: 10, lt: 20 })],
 *       mustNot: [match("region", "eu")],
 *       should: [match("color", "red"), match("color", "blue")],
 *       minimumShouldMatch: 1,
 *     })
 */

export type Scalar = string | number | boolean;

export interface MatchClause {
  readonly field: string;
  readonly value: Scalar;
}

export interface RangeBounds {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export interface RangeClause extends Readonly<RangeBounds> {
  readonly field: string;
}

export type Clause = MatchClause | RangeClause;

/** The wire form of a filter. */
export interface FilterJSON {
  must?: Clause[];
  should?: Clause[];
  must_not?: Clause[];
  minimum_should_match?: number;
}

const built = new WeakSet<object>();

function checkField(field: unknown): string {
  if (typeof field !== "string" || field.trim() === "") {
    throw new RangeError(`a filter field must be a non-blank string, got ${JSON.stringify(field)}`);
  }
  return field;
}

/** `field` equals `value` (for an array payload: any element does). Numbers
 * compare numerically; otherwise the types must agree. */
export function match(field: string, value: Scalar): MatchClause {
  checkField(field);
  const ok =
    typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value));
  if (!ok) {
    throw new TypeError(`match value must be a string, finite number or boolean, got ${String(value)}`);
  }
  const clause = Object.freeze({ field, value });
  built.add(clause);
  return clause;
}

/** `field` is a number within every given bound (`gt`/`lt` strict). */
export function range(field: string, bounds: RangeBounds): RangeClause {
  checkField(field);
  const out: { field: string } & RangeBounds = { field };
  for (const key of ["gt", "gte", "lt", "lte"] as const) {
    const b = bounds[key];
    if (b === undefined) continue;
    if (typeof b !== "number" || !Number.isFinite(b)) {
      throw new TypeError(`range bound ${key} must be a finite number, got ${String(b)}`);
    }
    out[key] = b;
  }
  if (Object.keys(out).length === 1) {
    throw new RangeError(`range on '${field}' needs at least one of gt, gte, lt, lte`);
  }
  const lower = out.gte ?? out.gt;
  const upper = out.lte ?? out.lt;
  if (lower !== undefined && upper !== undefined && lower > upper) {
    throw new RangeError(`range on '${field}' has lower bound ${lower} above upper bound ${upper}`);
  }
  const clause = Object.freeze(out);
  built.add(clause);
  return clause;
}

export interface FilterSpec {
  must?: readonly Clause[];
  should?: readonly Clause[];
  mustNot?: readonly Clause[];
  /** Default 1 when `should` is non-empty; 0 disables `should`. */
  minimumShouldMatch?: number;
}

/** A validated, frozen filter; pass it as `filter` to searches and counts. */
export class Filter {
  readonly must: readonly Clause[];
  readonly should: readonly Clause[];
  readonly mustNot: readonly Clause[];
  readonly minimumShouldMatch: number | undefined;

  constructor(spec: FilterSpec = {}) {
    const list = (name: string, items: readonly Clause[] | undefined): readonly Clause[] => {
      if (items === undefined) return Object.freeze([]);
      if (!Array.isArray(items)) throw new TypeError(`${name} must be an array of clauses`);
      for (const c of items) {
        if (!built.has(c)) throw new TypeError(`${name} holds a clause not made by match() or range()`);
      }
      return Object.freeze([...items]);
    };
    this.must = list("must", spec.must);
    this.should = list("should", spec.should);
    this.mustNot = list("mustNot", spec.mustNot);
    const m = spec.minimumShouldMatch;
    if (m !== undefined) {
      if (!Number.isInteger(m) || m < 0) {
        throw new RangeError(`minimumShouldMatch must be an integer >= 0, got ${m}`);
      }
      if (m > this.should.length) {
        throw new RangeError(`minimumShouldMatch (${m}) exceeds the number of should clauses (${this.should.length})`);
      }
    }
    this.minimumShouldMatch = m;
    Object.freeze(this);
  }

  toJSON(): FilterJSON {
    const out: FilterJSON = {};
    if (this.must.length) out.must = [...this.must];
    if (this.should.length) out.should = [...this.should];
    if (this.mustNot.length) out.must_not = [...this.mustNot];
    if (this.minimumShouldMatch !== undefined) out.minimum_should_match = this.minimumShouldMatch;
    return out;
  }
}

/** `new Filter(spec)`. */
export function filter(spec: FilterSpec = {}): Filter {
  return new Filter(spec);
}
