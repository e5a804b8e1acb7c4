// What the fleet tests share: an offline synth, the dashboard body as the deployed JSON, and
// what the publisher sends, read from the repository's README (its metrics table is generated
// from the Rust code and tested to be current) and the Pi's example config.

import * as fs from "node:fs";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { PublisherBackendProps, PublisherBackendStack } from "../../lib/publisher-backend-stack";

export const ENV = { account: "123456789012", region: "eu-west-1" };

/** The repository's top: this file runs from infrastructure/dist/test/support/. */
export const REPO = path.resolve(__dirname, "..", "..", "..", "..");

export function synth(props: PublisherBackendProps = {}): Template {
  const app = new App();
  return Template.fromStack(new PublisherBackendStack(app, "PublisherBackend", { env: ENV, ...props }));
}

export type Resource = { Type: string; Properties: Record<string, any> };

export function resources(t: Template, type: string): Record<string, Resource> {
  return t.findResources(type) as Record<string, Resource>;
}

/** A CloudFormation value with its references filled in: the region, and alarms' ARNs. */
function resolve(value: unknown): string {
  if (typeof value === "string") {
    return value;
  }
  const v = value as Record<string, any>;
  if (v.Ref === "AWS::Region") {
    return ENV.region;
  }
  if (v.Ref === "AWS::Partition") {
    return "aws";
  }
  if (Array.isArray(v["Fn::GetAtt"]) && v["Fn::GetAtt"][1] === "Arn") {
    return `arn:aws:cloudwatch:${ENV.region}:${ENV.account}:alarm:${v["Fn::GetAtt"][0]}`;
  }
  if (Array.isArray(v["Fn::Join"])) {
    const [sep, parts] = v["Fn::Join"];
    return (parts as unknown[]).map(resolve).join(sep);
  }
  throw new Error(`cannot resolve ${JSON.stringify(value)}`);
}

export interface Widget {
  type: string;
  x: number;
  y: number;
  width: number;
  height: number;
  properties: Record<string, any>;
}

export interface DashboardBody {
  widgets: Widget[];
  [key: string]: unknown;
}

/** The one dashboard's body text, as CloudWatch would receive it. */
export function dashboardBodyText(t: Template): string {
  const dashboards = Object.values(resources(t, "AWS::CloudWatch::Dashboard"));
  if (dashboards.length !== 1) {
    throw new Error(`expected one dashboard, found ${dashboards.length}`);
  }
  return resolve(dashboards[0].Properties.DashboardBody);
}

export function dashboardBody(t: Template): DashboardBody {
  return JSON.parse(dashboardBodyText(t));
}

/** Each metric entry's options: CDK writes `[namespace, name, ..., {options}]` or `[{options}]`. */
export function metricEntries(widget: Widget): Array<Record<string, any>> {
  return (widget.properties.metrics ?? []).map((entry: unknown[]) => {
    const last = entry[entry.length - 1];
    return typeof last === "object" && last !== null ? (last as Record<string, any>) : {};
  });
}

export interface SentMetric {
  section: string;
  metric: string;
  /** The dimension names the publisher sends it with, under the fleet's config. */
  dimensions: string[];
}

/** What a device with configs/raspberry-pi.json sends, by metric name, from the README. */
export function sentMetrics(): Map<string, SentMetric> {
  const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
  const config = JSON.parse(fs.readFileSync(path.join(REPO, "configs", "raspberry-pi.json"), "utf8"));
  const sections: Record<string, any> = config.metrics.metrics_collected;
  const appended = Object.keys(config.metrics.append_dimensions ?? {});
  const out = new Map<string, SentMetric>();

  // | `disk` | `disk_used_percent` | Percent | reading | path (mount point), device (...), fstype | yes | yes |
  const row = /^\| `([a-z_]+)` \| `([A-Za-z_]+)` \| [^|]+ \| [^|]+ \| ([^|]+) \|/;
  for (const line of readme.split("\n")) {
    const m = row.exec(line);
    if (!m || !(m[1] in sections)) {
      continue;
    }
    const [, section, metric, dims] = m;
    let dimensions: string[];
    if (section === "summary") {
      if (!/InstanceId and Hostname only/.test(dims)) {
        throw new Error(`README: summary row ${metric} no longer says "InstanceId and Hostname only"`);
      }
      dimensions = ["InstanceId", "Hostname"];
    } else {
      // "path (mount point), device (...), fstype": the names, without what the brackets say.
      const names = dims.replace(/\([^)]*\)/g, "").trim();
      const own = names === "—" ? [] : names.split(",").map((d) => d.trim());
      const dropped = sections[section].drop_device ? ["device"] : [];
      dimensions = ["host", ...own.filter((d) => !dropped.includes(d)), ...appended];
    }
    out.set(metric, { section, metric, dimensions });
  }

  // The original 13, from their own table: every name in its first column.
  const start = readme.indexOf("### The original 13");
  const end = readme.indexOf("\n### ", start + 1);
  if (start < 0 || end < 0) {
    throw new Error('README: no "### The original 13" section');
  }
  const original: string[] = [];
  for (const line of readme.slice(start, end).split("\n")) {
    const first = /^\| ([^|]+) \|/.exec(line)?.[1] ?? "";
    for (const name of first.matchAll(/`([A-Za-z]+)`/g)) {
      original.push(name[1]);
    }
  }
  for (const metric of original) {
    if (out.get(metric)?.section !== "summary") {
      throw new Error(`README: ${metric} is in "The original 13" but not a summary row`);
    }
  }
  if (original.length !== 13) {
    throw new Error(`README: "The original 13" lists ${original.length} metrics`);
  }
  return out;
}

/** The metrics CloudWatch Logs publishes per log group (AWS/Logs, dimension LogGroupName). */
export const AWS_LOGS_METRICS = new Map([
  ["IncomingBytes", ["LogGroupName"]],
  ["IncomingLogEvents", ["LogGroupName"]],
]);
