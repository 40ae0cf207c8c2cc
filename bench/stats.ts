/**
 * Statistics over paired benchmark rounds: each round measures both sides (TypeScript and C)
 * back to back, so a round's ratio compares runs that saw the same machine state. The summary is
 * the min / median / max of those per-round ratios, never the ratio of two medians (which pairs
 * a TypeScript run with a C run from another round and keeps none of the pairing).
 *
 * ```
 *   round r: TS₁ C₁ C₂ TS₂ (ABBA) ──► ratio_r = mean(TS₁, TS₂) / mean(C₁, C₂)
 *   rounds  ──► { min, median, max } of ratio_r, and of each side's Mpps
 * ```
 *
 * @module
 */

/** Minimum, median and maximum of a set of figures. */
export interface Spread {
  /** Smallest value. */
  min: number;
  /** Median (mean of the two middle values for an even count). */
  median: number;
  /** Largest value. */
  max: number;
  /** Number of values. */
  n: number;
}

/**
 * Min, median and max of `xs` (NaN entries ignored); all NaN when nothing is left.
 *
 * @example
 * ```ts
 * spread([3, 1, 2]); // { min: 1, median: 2, max: 3, n: 3 }
 * ```
 */
export function spread(xs: readonly number[]): Spread {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1], n: s.length };
}

/** Arithmetic mean; NaN for no values. */
export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * The order in which round `round` runs the two sides. `abba` runs A B B A, so a linear drift
 * over the round weighs both sides equally; `ab` alternates the first side between rounds
 * (A B, then B A), half the runs, drift cancelled only across round pairs.
 *
 * @example
 * ```ts
 * runOrder("abba", 0); // ["ts", "c", "c", "ts"]
 * runOrder("ab", 1); // ["c", "ts"]
 * ```
 */
export function runOrder(order: "abba" | "ab", round: number): ("ts" | "c")[] {
  if (order === "abba") return ["ts", "c", "c", "ts"];
  return round % 2 === 0 ? ["ts", "c"] : ["c", "ts"];
}

/**
 * The per-round ratio TS/C from the runs of one round: mean TS Mpps over mean C Mpps.
 *
 * @example
 * ```ts
 * roundRatio([10, 12], [11, 11]); // 1
 * ```
 */
export function roundRatio(ts: readonly number[], c: readonly number[]): number {
  return mean(ts) / mean(c);
}
