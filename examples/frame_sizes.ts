/**
 * Frame sizes for pktgen: one `--size` (`64`), a range swept in order (`64-1518`), a random size
 * in a range (`--size-mode random`), or an IMIX (`--imix 60:28,590:20,1514:4`, size:weight
 * without FCS; `--imix default` is the classic 7:4:1 simple IMIX of 60, 590 and 1514 bytes).
 * The sizes are laid out once in a table that the send loop walks with a counter.
 *
 * ```
 *   "--imix 60:7,590:4,1514:1" ──► table [60 590 60 1514 60 ...] (shuffled) ──► size[k & mask]
 * ```
 *
 * @module
 */

/** Sizes of a run, walked in order by the send loop. */
export interface SizeTable {
  /** The table (length a power of two). */
  sizes: Uint16Array;
  /** `sizes.length - 1`. */
  mask: number;
  /** Mean size over the table. */
  mean: number;
  /** Smallest size. */
  min: number;
  /** Largest size. */
  max: number;
  /** Human description, for the report. */
  text: string;
}

/** The classic simple IMIX, 7:4:1 of 60 (64 with FCS), 590 (594) and 1514 (1518) bytes. */
export const DEFAULT_IMIX = "60:7,590:4,1514:1";

const TABLE = 4096;

/**
 * Builds the size table from `--size` (`N` or `MIN-MAX`), `--size-mode` (`inc` or `random`) and
 * `--imix`; throws a `TypeError` naming the bad option.
 *
 * @example
 * ```ts
 * import { sizeTable } from "./frame_sizes.ts";
 * const t = sizeTable("64", "inc", undefined, 60, 2036);
 * console.assert(t.min === 64 && t.max === 64 && t.mean === 64);
 * ```
 */
export function sizeTable(
  size: string,
  mode: string,
  imix: string | undefined,
  lowest: number,
  highest: number,
): SizeTable {
  const check = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < lowest || n > highest) {
      throw new TypeError(`${what}: expected a frame size in ${lowest}..${highest}, got ${n}`);
    }
    return n;
  };
  const sizes = new Uint16Array(TABLE);
  let text: string;
  let state = 0x12345679;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  if (imix !== undefined) {
    const spec = imix === "default" || imix === "" ? DEFAULT_IMIX : imix;
    const parts = spec.split(",").map((p) => {
      const m = /^(\d+):(\d+)$/.exec(p.trim());
      if (m === null) throw new TypeError(`--imix: expected SIZE:WEIGHT,..., got "${p}"`);
      return { size: check(Number(m[1]), "--imix"), weight: Number(m[2]) };
    });
    const total = parts.reduce((a, p) => a + p.weight, 0);
    if (total === 0) throw new TypeError("--imix: the weights add up to 0");
    // Exact proportions over the table (largest remainder), then a deterministic shuffle.
    let at = 0;
    const counts = parts.map((p) => Math.floor(TABLE * p.weight / total));
    let left = TABLE - counts.reduce((a, c) => a + c, 0);
    for (let i = 0; left > 0; i = (i + 1) % parts.length, left--) counts[i]++;
    parts.forEach((p, i) => {
      for (let k = 0; k < counts[i]; k++) sizes[at++] = p.size;
    });
    for (let i = TABLE - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = sizes[i];
      sizes[i] = sizes[j];
      sizes[j] = t;
    }
    text = `imix ${spec}`;
  } else {
    const m = /^(\d+)(?:-(\d+))?$/.exec(size.trim());
    if (m === null) throw new TypeError(`--size: expected N or MIN-MAX, got "${size}"`);
    const lo = check(Number(m[1]), "--size");
    const hi = m[2] === undefined ? lo : check(Number(m[2]), "--size");
    if (hi < lo) throw new TypeError(`--size: ${lo}-${hi} is an empty range`);
    if (mode !== "inc" && mode !== "random") {
      throw new TypeError(`--size-mode: expected inc or random, got "${mode}"`);
    }
    const span = hi - lo + 1;
    for (let k = 0; k < TABLE; k++) {
      sizes[k] = mode === "random" ? lo + Math.floor(random() * span) : lo + (k % span);
    }
    text = lo === hi ? `${lo}` : `${lo}-${hi} ${mode === "random" ? "random" : "incrementing"}`;
  }
  let sum = 0, min = Infinity, max = 0;
  for (const s of sizes) {
    sum += s;
    if (s < min) min = s;
    if (s > max) max = s;
  }
  return { sizes, mask: TABLE - 1, mean: sum / TABLE, min, max, text };
}
