#!/usr/bin/env node
// The CDK app: one PublisherBackend stack in the account and region of the deploying
// credentials. Context (cdk.json, or -c on the command line):
//   metricNamespaces  comma-separated namespaces devices may publish to (default System/*)
//   logGroupPrefix    log groups devices may write to start with this (default /system/)
//   stackName         default PublisherBackend

import { App } from "aws-cdk-lib";
import { PublisherBackendStack } from "../lib/publisher-backend-stack";

const app = new App();
const context = (key: string): string | undefined => {
  const value = app.node.tryGetContext(key);
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
};

new PublisherBackendStack(app, context("stackName") ?? "PublisherBackend", {
  description: "Cognito sign-in and a least-privilege role for amazon-cloudwatch-publisher devices",
  metricNamespaces: context("metricNamespaces")?.split(",").map((n) => n.trim()),
  logGroupPrefix: context("logGroupPrefix"),
  env: {
    account: process.env.CDK_DEFAULT_ACCOUNT,
    region: process.env.CDK_DEFAULT_REGION,
  },
});
