/**
 * Which example features exist in this checkout, read from each example's `--help`, so a matrix
 * row whose TypeScript side needs a feature still to come prints "n/a: needs …" instead of
 * failing, and lights up once the feature is merged.
 *
 * ```
 *   deno run examples/NAME.ts --help ──usage text──► has(NAME, /--flows/) ──► row runs | n/a
 * ```
 *
 * @module
 */

import { examplePath } from "./peers.ts";

const usage = new Map<string, string>();

/** The `--help` text of `examples/NAME.ts` (cached; empty when the example fails to run). */
export async function helpText(name: string): Promise<string> {
  let text = usage.get(name);
  if (text === undefined) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", examplePath(name), "--help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    text = new TextDecoder().decode(out.stdout);
    usage.set(name, text);
  }
  return text;
}

/** A feature of an example, named for the "n/a: needs …" line, and how its usage shows it. */
export interface Feature {
  /** Example file name without `.ts`. */
  example: string;
  /** What the row needs, as printed: e.g. "pktgen --flows". */
  name: string;
  /** Matches the usage text when the feature exists. */
  pattern: RegExp;
}

/** Features rows can require. */
export const FEATURES = {
  flows: { example: "pktgen", name: "pktgen --flows", pattern: /--flows\b/ },
  latency: {
    example: "pktgen",
    name: "pktgen --latency and --rate",
    pattern: /--latency\b[\s\S]*--rate\b|--rate\b[\s\S]*--latency\b/,
  },
  forward: {
    example: "device",
    name: "a device.ts forwarding mode (--mode forward --peer-path)",
    pattern: /--peer-path\b/,
  },
  deviceBurst: { example: "device", name: "device.ts --burst", pattern: /--burst\b/ },
} satisfies Record<string, Feature>;

/** Whether every feature in `needs` exists; the first missing one's name otherwise. */
export async function missing(needs: readonly Feature[]): Promise<string | null> {
  for (const f of needs) {
    if (!f.pattern.test(await helpText(f.example))) return f.name;
  }
  return null;
}

/**
 * The largest frame `examples/NAME.ts` takes, from its usage text: the range of `--size`
 * (`--size BYTES ... 60..9000`) or the frames `--mergeable` receives (`--mergeable ... up to
 * 9000 B`); 2036 when it names neither (the single-buffer limit).
 */
export async function maxFrameSize(name: string): Promise<number> {
  const m = /--size \S+[^\n]*?\d+\.\.(\d+)|--mergeable[^\n]*?up to (\d+)/.exec(
    await helpText(name),
  );
  return m === null ? 2036 : Number(m[1] ?? m[2]);
}
