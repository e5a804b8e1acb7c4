// The app as `cdk synth -c key=value` runs it (offline): its context switches and settings reach
// the stack, and a bad one is refused by name.

import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const APP = path.join(__dirname, "..", "bin", "publisher-backend.js");

/** Runs the app with `context` as the CDK CLI passes it; returns its resource types and exit. */
function synthApp(context: Record<string, string>): { types: string[]; status: number | null; stderr: string } {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "publisher-backend-"));
  try {
    const run = spawnSync(process.execPath, [APP], {
      env: { ...process.env, CDK_OUTDIR: out, CDK_CONTEXT_JSON: JSON.stringify(context) },
      encoding: "utf8",
    });
    const file = path.join(out, `${context.stackName ?? "PublisherBackend"}.template.json`);
    const types = fs.existsSync(file)
      ? Object.values(JSON.parse(fs.readFileSync(file, "utf8")).Resources as Record<string, { Type: string }>).map(
          (r) => r.Type,
        )
      : [];
    return { types, status: run.status, stderr: run.stderr };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

test("the dashboard and alarms are on unless -c dashboard=false and -c alarms=false", () => {
  const on = synthApp({});
  assert.equal(on.status, 0, on.stderr);
  assert.ok(on.types.includes("AWS::CloudWatch::Dashboard"));
  assert.ok(on.types.includes("AWS::CloudWatch::Alarm"));
  assert.ok(on.types.includes("AWS::SNS::Topic"));

  const off = synthApp({ dashboard: "false", alarms: "false", stackName: "Quiet" });
  assert.equal(off.status, 0, off.stderr);
  assert.ok(off.types.includes("AWS::Cognito::UserPool"), off.types.join(", "));
  for (const type of ["AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm", "AWS::SNS::Topic"]) {
    assert.ok(!off.types.includes(type), `${type} with dashboard=false alarms=false`);
  }

  const email = synthApp({ alarmEmail: "ops@example.com" });
  assert.equal(email.status, 0, email.stderr);
  assert.ok(email.types.includes("AWS::SNS::Subscription"));
});

test("a context value the app cannot take is named", () => {
  const bad = synthApp({ dashboard: "maybe" });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /dashboard: maybe is neither true nor false/);
  const nan = synthApp({ silentMinutes: "soon" });
  assert.notEqual(nan.status, 0);
  assert.match(nan.stderr, /silentMinutes: soon is not a number/);
});
