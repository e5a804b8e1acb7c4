#!/usr/bin/env node
// The CDK app: one PublisherBackend stack in the account and region of the deploying
// credentials. Context (cdk.json, or -c on the command line):
//   metricNamespaces    comma-separated namespaces devices may publish to (default System/*)
//   logGroupPrefix      log groups devices may write to start with this (default /system/)
//   stackName           default PublisherBackend
// The fleet's dashboard and alarms (README: "A fleet"):
//   dashboard           false leaves the dashboard out (default true)
//   alarms              false leaves the alarms and their topic out (default true)
//   dashboardNamespace  the namespace both read (default System/Default)
//   dashboardTopN       devices each graph shows (default 10)
//   silentMinutes       a device silent this long is reported (default 15)
//   diskUsedPercent     a file system fuller than this is reported (default 90)
//   temperatureCelsius  a sensor above this for 15 minutes is reported (default 80)
//   alarmEmail          subscribed to the alarms' topic (default none)

import { App } from "aws-cdk-lib";
import { PublisherBackendStack } from "../lib/publisher-backend-stack";

const app = new App();
const context = (key: string): string | undefined => {
  const value = app.node.tryGetContext(key);
  if (typeof value === "number" || typeof value === "boolean") {
    return String(value);
  }
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
};
const flag = (key: string): boolean | undefined => {
  const value = context(key);
  if (value === undefined) {
    return undefined;
  }
  if (value !== "true" && value !== "false") {
    throw new Error(`${key}: ${value} is neither true nor false`);
  }
  return value === "true";
};
const number = (key: string): number | undefined => {
  const value = context(key);
  if (value === undefined) {
    return undefined;
  }
  const n = Number(value);
  if (!Number.isFinite(n)) {
    throw new Error(`${key}: ${value} is not a number`);
  }
  return n;
};

new PublisherBackendStack(app, context("stackName") ?? "PublisherBackend", {
  description: "Cognito sign-in and a least-privilege role for amazon-cloudwatch-publisher devices",
  metricNamespaces: context("metricNamespaces")?.split(",").map((n) => n.trim()),
  logGroupPrefix: context("logGroupPrefix"),
  dashboard: flag("dashboard"),
  alarms: flag("alarms"),
  dashboardNamespace: context("dashboardNamespace"),
  dashboardTopN: number("dashboardTopN"),
  silentMinutes: number("silentMinutes"),
  diskUsedPercent: number("diskUsedPercent"),
  temperatureCelsius: number("temperatureCelsius"),
  alarmEmail: context("alarmEmail"),
  env: {
    account: process.env.CDK_DEFAULT_ACCOUNT,
    region: process.env.CDK_DEFAULT_REGION,
  },
});
