// docs/dashboard.svg, the README's picture of the dashboard, is what
// scripts/draw-dashboard.ts draws from the stack now. After changing the dashboard:
//   UPDATE_DASHBOARD_SVG=1 npm test     (or: npm run draw-dashboard)

import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { defaultDashboardBody, drawDefaultDashboard, PICTURE } from "../scripts/draw-dashboard";
import { dashboardBody, synth } from "./support/fleet";

test("the picture has one box per widget, where the widget is", () => {
  const svg = drawDefaultDashboard();
  const box = /<g data-type="(\w+)" data-x="(\d+)" data-y="(\d+)" data-width="(\d+)" data-height="(\d+)">/g;
  const boxes = [...svg.matchAll(box)].map((m) => ({
    type: m[1],
    x: +m[2],
    y: +m[3],
    width: +m[4],
    height: +m[5],
  }));
  const widgets = dashboardBody(synth()).widgets.map(({ type, x, y, width, height }) => ({
    type,
    x,
    y,
    width,
    height,
  }));
  assert.deepEqual(boxes, widgets);
  // The script's own synth gives the same body as the tests'.
  assert.deepEqual(defaultDashboardBody().widgets.length, widgets.length);
  for (const w of dashboardBody(synth()).widgets) {
    if (w.properties.title) {
      const start = String(w.properties.title).split(" ").slice(0, 2).join(" ");
      assert.ok(svg.includes(start.replace(/&/g, "&amp;")), `the picture names "${w.properties.title}"`);
    }
  }
});

test("docs/dashboard.svg is what the script draws now", () => {
  const drawn = drawDefaultDashboard();
  if (process.env.UPDATE_DASHBOARD_SVG === "1") {
    fs.mkdirSync(path.dirname(PICTURE), { recursive: true });
    fs.writeFileSync(PICTURE, drawn);
  }
  assert.ok(
    fs.existsSync(PICTURE),
    `${PICTURE} is missing: run UPDATE_DASHBOARD_SVG=1 npm test in infrastructure/`,
  );
  assert.equal(
    fs.readFileSync(PICTURE, "utf8"),
    drawn,
    "docs/dashboard.svg is not what scripts/draw-dashboard.ts draws: " +
      "run UPDATE_DASHBOARD_SVG=1 npm test",
  );
});
