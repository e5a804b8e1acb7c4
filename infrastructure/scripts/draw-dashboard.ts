// Draws the fleet dashboard's layout as an SVG picture for the README: each widget a labelled
// box at its x, y, width and height on CloudWatch's 24-column grid, from the dashboard body of
// the stack synthesized offline with its defaults. Not a screenshot: the boxes say what each
// widget asks, not what it shows.
//
//   npm run draw-dashboard            writes ../docs/dashboard.svg
//   node dist/scripts/draw-dashboard.js OUT.svg
//
// test/dashboard-picture.test.ts checks the committed picture is what this draws now.

import * as fs from "node:fs";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { PublisherBackendStack } from "../lib/publisher-backend-stack";

export interface Widget {
  type: string;
  x: number;
  y: number;
  width: number;
  height: number;
  properties: Record<string, any>;
}

const STACK = "PublisherBackend";
const ENV = { account: "123456789012", region: "eu-west-1" };

/** CloudFormation's references in the body, filled in with the example account's values; an
 * alarm's ARN ends in its name, as CloudWatch's do. */
function resolve(value: unknown, resources: Record<string, any>): string {
  if (typeof value === "string") {
    return value;
  }
  const v = value as Record<string, any>;
  if (v.Ref === "AWS::Region") {
    return ENV.region;
  }
  if (Array.isArray(v["Fn::GetAtt"])) {
    const name = resources[v["Fn::GetAtt"][0]].Properties.AlarmName;
    return `arn:aws:cloudwatch:${ENV.region}:${ENV.account}:alarm:${name}`;
  }
  if (Array.isArray(v["Fn::Join"])) {
    const [sep, parts] = v["Fn::Join"];
    return (parts as unknown[]).map((p) => resolve(p, resources)).join(sep);
  }
  throw new Error(`cannot resolve ${JSON.stringify(value)}`);
}

/** The dashboard body of the stack with its defaults, synthesized offline. */
export function defaultDashboardBody(): { widgets: Widget[] } {
  const app = new App();
  new PublisherBackendStack(app, STACK, { env: ENV });
  const resources: Record<string, any> = app.synth().getStackByName(STACK).template.Resources;
  const dashboards = Object.values(resources).filter(
    (r) => r.Type === "AWS::CloudWatch::Dashboard",
  );
  if (dashboards.length !== 1) {
    throw new Error(`expected one dashboard, found ${dashboards.length}`);
  }
  return JSON.parse(resolve(dashboards[0].Properties.DashboardBody, resources));
}

const COLUMN = 40;
const ROW = 26;
const MARGIN = 16;
const CHAR = 7; // the width of a 11.5px sans-serif character, near enough to fit lines
const FILL: Record<string, string> = {
  text: "#f4f4f4",
  metric: "#e8f1fb",
  alarm: "#fdeee2",
  log: "#e9f5e9",
};

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Words laid into lines of at most `width` characters; the last line cut with "…". */
function wrap(text: string, width: number, lines: number): string[] {
  if (lines <= 0) {
    return [];
  }
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    const next = line === "" ? word : `${line} ${word}`;
    if (next.length <= width) {
      line = next;
      continue;
    }
    if (line !== "") {
      out.push(line);
    }
    line = word;
  }
  if (line !== "") {
    out.push(line);
  }
  const kept = out.slice(0, lines).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
  if (out.length > lines) {
    const last = kept[lines - 1];
    kept[lines - 1] = `${last.slice(0, Math.max(0, width - 1))}…`;
  }
  return kept;
}

/** What a widget asks, in a line or two under its title. */
export function describe(w: Widget): { title: string; detail: string } {
  const p = w.properties;
  switch (w.type) {
    case "text":
      return { title: String(p.markdown).split("\n")[0].replace(/^#+\s*/, ""), detail: "text" };
    case "alarm":
      const names = (p.alarms as string[]).map((arn) => arn.slice(arn.lastIndexOf(":") + 1));
      return { title: p.title, detail: `alarm status: ${names.join(", ")}` };
    case "log": {
      const lines = String(p.query).split("\n| ");
      return { title: p.title, detail: `Logs Insights: ${lines.join(" | ")}` };
    }
    case "metric": {
      const shown = (p.metrics as any[][])
        .map((entry) => entry[entry.length - 1])
        .filter((m) => m.visible !== false)
        .map((m) => m.expression as string);
      const hidden = (p.metrics as any[][])
        .map((entry) => entry[entry.length - 1])
        .filter((m) => m.visible === false)
        .map((m) => `${m.id} = ${m.expression}`);
      return { title: p.title, detail: [...shown, ...hidden].join("; where ") };
    }
    default:
      return { title: p.title ?? w.type, detail: w.type };
  }
}

/** The picture: one box per widget, title in bold, what it asks below. */
export function drawDashboard(body: { widgets: Widget[] }, caption: string): string {
  const rows = Math.max(...body.widgets.map((w) => w.y + w.height));
  const width = 24 * COLUMN + 2 * MARGIN;
  const captionLines = wrap(caption, Math.floor((width - 2 * MARGIN) / CHAR), 2);
  const height = rows * ROW + 2 * MARGIN + 16 * captionLines.length;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  for (const w of body.widgets) {
    const x = MARGIN + w.x * COLUMN;
    const y = MARGIN + w.y * ROW;
    const wpx = w.width * COLUMN;
    const hpx = w.height * ROW;
    const { title, detail } = describe(w);
    const chars = Math.floor((wpx - 16) / CHAR);
    out.push(
      `<g data-type="${w.type}" data-x="${w.x}" data-y="${w.y}" ` +
        `data-width="${w.width}" data-height="${w.height}">`,
    );
    out.push(
      `<rect x="${x + 3}" y="${y + 3}" width="${wpx - 6}" height="${hpx - 6}" rx="4" ` +
        `fill="${FILL[w.type] ?? "#ffffff"}" stroke="#7f8c99"/>`,
    );
    const titleLines = wrap(title, Math.floor(chars * 0.9), w.height <= 2 ? 1 : 2);
    let line = y + 22;
    for (const t of titleLines) {
      const bold = 'font-size="13" font-weight="bold" fill="#1d2731"';
      out.push(`<text x="${x + 11}" y="${line}" ${bold}>${escape(t)}</text>`);
      line += 16;
    }
    const room = Math.max(0, Math.floor((y + hpx - 10 - line) / 14));
    for (const d of wrap(detail, chars, room)) {
      out.push(`<text x="${x + 11}" y="${line + 2}" font-size="11.5" fill="#3d4a57">${escape(d)}</text>`);
      line += 14;
    }
    out.push("</g>");
  }
  captionLines.forEach((c, i) => {
    const cy = MARGIN + rows * ROW + 14 + 16 * i;
    out.push(`<text x="${MARGIN}" y="${cy}" font-size="11.5" fill="#5b6875">${escape(c)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

export const CAPTION =
  `The ${STACK}-fleet dashboard's layout on CloudWatch's 24-column grid, with the stack's defaults ` +
  "(drawn by infrastructure/scripts/draw-dashboard.ts from the synthesized template)";

/** The picture of the stack's dashboard with its defaults. */
export function drawDefaultDashboard(): string {
  return drawDashboard(defaultDashboardBody(), CAPTION);
}

/** Where the README finds the picture: docs/dashboard.svg at the repository's top. */
export const PICTURE = path.resolve(__dirname, "..", "..", "..", "docs", "dashboard.svg");

if (require.main === module) {
  const out = process.argv[2] ?? PICTURE;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, drawDefaultDashboard());
  console.log(`Wrote ${out}`);
}
