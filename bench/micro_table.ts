/**
 * The README's micro-benchmark table: runs `deno bench --json` over the ring and packet
 * benchmarks and prints, per benchmark, the time per unit (a descriptor or a frame): the
 * iteration time divided by the `time / N` its name or group states (1 when it states none).
 * Median-like figure: p75 of the iterations, and the minimum (least disturbed) beside it.
 *
 * Run: `deno run -A bench/micro_table.ts` (Markdown on stdout).
 *
 * @module
 */

interface Bench {
  group: string | null;
  name: string;
  results: { ok?: { min: number; p75: number; n: number } }[];
}

const files = ["bench/ring_bench.ts", "bench/packet_bench.ts"].map((f) =>
  new URL(`../${f}`, import.meta.url).pathname
);
const out = await new Deno.Command(Deno.execPath(), {
  args: ["bench", "--allow-all", "--unstable-ffi", "--json", ...files],
  stdout: "piped",
  stderr: "inherit",
}).output();
const { benches, cpu } = JSON.parse(new TextDecoder().decode(out.stdout)) as {
  benches: Bench[];
  cpu: string;
};

/** The N of "time / N" in the name, else in the group, else 1. */
function unitsOf(b: Bench): number {
  const m = /time \/ (\d+)/.exec(b.name) ?? /time \/ (\d+)/.exec(b.group ?? "");
  return m === null ? 1 : Number(m[1]);
}

const ns = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const lines = [
  `CPU: ${cpu}`,
  "",
  "| group | benchmark | ns per unit, p75 | ns per unit, min |",
  "| --- | --- | --- | --- |",
];
let last = "";
for (const b of benches) {
  const r = b.results[0]?.ok;
  if (r === undefined) continue;
  const n = unitsOf(b);
  const group = b.group ?? "";
  lines.push(
    `| ${group === last ? "" : group} | ${b.name} | ${ns(r.p75 / n)} | ${ns(r.min / n)} |`,
  );
  last = group;
}
console.log(lines.join("\n"));
