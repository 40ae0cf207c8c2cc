/**
 * Plain SVG charts (no scripts, no external fonts) any browser shows.
 *
 * ```
 *   ratioChart: one bar per row, length = median TS/C, whisker = min..max, line at 1.0
 *   sweepChart: per (job, axis) two panels, Mpps and Gbps against the swept value (log x),
 *               TypeScript and C as two lines of points
 * ```
 *
 * @module
 */

import type { PairResult } from "./rounds.ts";

const FONT = `font-family="sans-serif" font-size="12"`;
const TITLE_FONT = `font-family="sans-serif" font-size="14"`;
const TS_COLOR = "#3178c6";
const C_COLOR = "#a8503c";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A title wrapped onto lines of at most `width` characters, from y = 20. */
function title(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + word.length + 1 > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.map((l, i) => `<text x="10" y="${20 + i * 18}" ${TITLE_FONT}>${esc(l)}</text>`);
}

function svg(width: number, height: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}">\n<rect width="100%" height="100%" fill="white"/>\n` +
    body.join("\n") + "\n</svg>\n";
}

/**
 * Bars of the median TS/C ratio per row with min–max whiskers; n/a rows show their reason.
 *
 * @example
 * ```ts
 * Deno.writeTextFileSync("matrix.svg", ratioChart(results, "64 B and 1518 B, 7 rounds"));
 * ```
 */
export function ratioChart(results: PairResult[], caption: string): string {
  const rowH = 22, labelW = 260, plotW = 420, top = 60;
  const finite = results.flatMap((r) => [r.ratio.max, r.ratio.median]).filter(Number.isFinite);
  const xMax = Math.max(1.5, Math.ceil(Math.max(0, ...finite) * 4) / 4);
  const x = (v: number) => labelW + (v / xMax) * plotW;
  const body = title(caption, 90);
  results.forEach((r, i) => {
    const y = top + i * rowH;
    body.push(
      `<text x="${labelW - 6}" y="${y + 15}" ${FONT} text-anchor="end">${esc(r.id)}</text>`,
    );
    if (!Number.isFinite(r.ratio.median)) {
      const why = r.tsNa ?? r.cNa ?? "no data";
      body.push(
        `<text x="${labelW + 4}" y="${y + 15}" ${FONT} fill="#888">n/a: ${esc(why)}</text>`,
      );
      return;
    }
    const { min, median, max } = r.ratio;
    body.push(
      `<rect x="${labelW}" y="${y + 4}" width="${(x(median) - labelW).toFixed(1)}" height="14" ` +
        `fill="${median >= 1 ? TS_COLOR : C_COLOR}" opacity="0.8"/>`,
      `<line x1="${x(min).toFixed(1)}" x2="${x(max).toFixed(1)}" y1="${y + 11}" y2="${y + 11}" ` +
        `stroke="black"/>`,
      `<line x1="${x(min).toFixed(1)}" x2="${x(min).toFixed(1)}" y1="${y + 6}" y2="${
        y + 16
      }" stroke="black"/>`,
      `<line x1="${x(max).toFixed(1)}" x2="${x(max).toFixed(1)}" y1="${y + 6}" y2="${
        y + 16
      }" stroke="black"/>`,
      `<text x="${(x(max) + 4).toFixed(1)}" y="${y + 15}" ${FONT}>${median.toFixed(2)}</text>`,
    );
  });
  const bottom = top + results.length * rowH;
  for (let v = 0; v <= xMax + 1e-9; v += 0.5) {
    body.push(
      `<line x1="${x(v)}" x2="${x(v)}" y1="${top}" y2="${bottom}" stroke="${
        v === 1 ? "black" : "#ddd"
      }"` +
        `${v === 1 ? ' stroke-dasharray="4 3"' : ""}/>`,
      `<text x="${x(v)}" y="${bottom + 16}" ${FONT} text-anchor="middle">${v.toFixed(1)}</text>`,
    );
  }
  body.push(
    `<text x="${labelW + plotW / 2}" y="${bottom + 34}" ${FONT} text-anchor="middle">` +
      `TypeScript / C, per-round ratio: bar = median, whisker = min..max</text>`,
  );
  return svg(labelW + plotW + 60, bottom + 46, body);
}

/** One panel of a sweep chart: y against log x for the TS and C series. */
function panel(
  ox: number,
  oy: number,
  name: string,
  points: { x: number; ts: number; c: number }[],
  unit: string,
  na: string,
): string[] {
  const w = 300, h = 180;
  const xs = points.map((p) => Math.log2(p.x));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const ys = points.flatMap((p) => [p.ts, p.c]).filter(Number.isFinite);
  const yMax = Math.max(1e-9, ...ys) * 1.1;
  const px = (v: number) => ox + ((Math.log2(v) - x0) / (x1 - x0)) * w;
  const py = (v: number) => oy + h - (v / yMax) * h;
  const out = [
    `<text x="${ox}" y="${oy - 8}" ${FONT}>${esc(name)} (${unit})</text>`,
    `<rect x="${ox}" y="${oy}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
    `<text x="${ox - 4}" y="${oy + h}" ${FONT} text-anchor="end">0</text>`,
  ];
  if (ys.length > 0) {
    out.push(
      `<text x="${ox - 4}" y="${oy + 10}" ${FONT} text-anchor="end">${yMax.toPrecision(3)}</text>`,
    );
  }
  let lastLabel = -Infinity;
  for (const p of points) {
    if (px(p.x) - lastLabel < 32) continue; // labels would overlap
    lastLabel = px(p.x);
    out.push(`<text x="${px(p.x)}" y="${oy + h + 14}" ${FONT} text-anchor="middle">${p.x}</text>`);
  }
  if (ys.length === 0) {
    out.push(`<text x="${ox + 8}" y="${oy + h / 2}" ${FONT} fill="#888">n/a: ${esc(na)}</text>`);
  }
  for (const [key, color] of [["ts", TS_COLOR], ["c", C_COLOR]] as const) {
    const pts = points.filter((p) => Number.isFinite(p[key]));
    if (pts.length > 1) {
      const d = pts.map((p) => `${px(p.x).toFixed(1)},${py(p[key]).toFixed(1)}`).join(" ");
      out.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    }
    for (const p of pts) {
      out.push(
        `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p[key]).toFixed(1)}" r="3" fill="${color}"/>`,
      );
    }
  }
  return out;
}

/**
 * The sweep: for each (job, axis) a row of two panels, Mpps and Gbps (medians) against the
 * swept value; points where a side is n/a are left out.
 */
export function sweepChart(results: PairResult[], caption: string): string {
  const groups = new Map<string, PairResult[]>();
  for (const r of results) {
    if (r.axis === undefined) continue;
    const key = `${r.job} ${r.ring}, ${r.axis.name}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const body = [
    ...title(caption, 95),
    `<text x="10" y="56" ${FONT} fill="${TS_COLOR}">● TypeScript</text>`,
    `<text x="110" y="56" ${FONT} fill="${C_COLOR}">● DPDK C</text>`,
  ];
  let row = 0;
  for (const [key, rs] of groups) {
    const oy = 90 + row++ * 230;
    const mpps = rs.map((r) => ({ x: r.axis!.value, ts: r.ts.median, c: r.c.median }));
    const gbps = rs.map((r) => ({ x: r.axis!.value, ts: r.gbps.ts, c: r.gbps.c }));
    const na = rs.find((r) => r.tsNa !== undefined)?.tsNa ?? "no data";
    body.push(...panel(60, oy, key, mpps, "Mpps", na), ...panel(430, oy, key, gbps, "Gbps", na));
  }
  return svg(760, 90 + row * 230 + 10, body);
}
