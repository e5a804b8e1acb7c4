// The fleet's dashboard and alarms in the synthesized template (offline): the body is JSON,
// every query is Metrics Insights over what the publisher really sends, each alarm has its
// threshold, comparison, topic and missing-data treatment, and the switches do what they say.

import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "aws-cdk-lib/assertions";
import { FLEET_DEFAULTS } from "../lib/publisher-backend-stack";
import {
  AWS_LOGS_METRICS,
  dashboardBody,
  dashboardBodyText,
  metricEntries,
  REPO,
  Resource,
  resources,
  sentMetrics,
  synth,
} from "./support/fleet";
import { isMetricsInsights, parseMetricsInsights, ParsedQuery } from "./support/metrics-insights";

function alarms(t: Template): Map<string, Resource> {
  return new Map(
    Object.values(resources(t, "AWS::CloudWatch::Alarm")).map((a) => [a.Properties.AlarmName, a]),
  );
}

function topicId(t: Template): string {
  const ids = Object.keys(resources(t, "AWS::SNS::Topic"));
  assert.equal(ids.length, 1, "one topic");
  return ids[0];
}

/** Every query of the dashboard and the alarms, with where it is. */
function allQueries(t: Template): Array<{ where: string; text: string }> {
  const out: Array<{ where: string; text: string }> = [];
  for (const w of dashboardBody(t).widgets) {
    for (const m of w.type === "metric" ? metricEntries(w) : []) {
      if (m.expression) {
        out.push({ where: `widget "${w.properties.title}"`, text: m.expression });
      }
    }
  }
  for (const [name, a] of alarms(t)) {
    for (const m of a.Properties.Metrics ?? []) {
      out.push({ where: `alarm ${name}`, text: m.Expression });
    }
  }
  return out;
}

/** The query's metric is one the publisher (or CloudWatch Logs) sends, with those dimensions. */
function checkAgainstPublisher(q: ParsedQuery, where: string, namespace: string): void {
  let dimensions: readonly string[];
  if (q.namespace === "AWS/Logs") {
    const known = AWS_LOGS_METRICS.get(q.metric);
    assert.ok(known, `${where}: AWS/Logs has no metric ${q.metric}`);
    dimensions = known;
  } else {
    assert.equal(q.namespace, namespace, `${where}: namespace`);
    const sent = sentMetrics().get(q.metric);
    assert.ok(sent, `${where}: the publisher sends no ${q.metric} (README's metrics table)`);
    dimensions = sent.dimensions;
  }
  assert.ok(q.schema, `${where}: names its dimension set with SCHEMA(...)`);
  assert.deepEqual([...q.schema].sort(), [...dimensions].sort(), `${where}: SCHEMA's dimensions`);
  for (const key of [...q.groupBy, ...q.where.map((p) => p.key)]) {
    assert.ok(q.schema.includes(key), `${where}: ${key} is not a dimension of ${q.metric}`);
  }
}

test("the dashboard body is valid JSON with widgets on the 24-column grid", () => {
  const text = dashboardBodyText(synth());
  const body = JSON.parse(text);
  assert.ok(Array.isArray(body.widgets) && body.widgets.length >= 12, "widgets");
  for (const w of body.widgets) {
    assert.ok(Number.isInteger(w.x) && w.x >= 0 && w.x + w.width <= 24, `x ${JSON.stringify(w)}`);
    assert.ok(Number.isInteger(w.y) && w.y >= 0 && w.height >= 1, `y ${JSON.stringify(w)}`);
  }
  // No two widgets overlap.
  for (const [i, a] of body.widgets.entries()) {
    for (const b of body.widgets.slice(i + 1)) {
      const apart =
        a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
      assert.ok(apart, `${a.properties.title} overlaps ${b.properties.title}`);
    }
  }
});

test("every query parses as Metrics Insights and reads what the publisher sends", () => {
  for (const namespace of [FLEET_DEFAULTS.dashboardNamespace, "System/RaspberryPi"]) {
    const t = synth({ dashboardNamespace: namespace });
    const queries = allQueries(t).filter((q) => isMetricsInsights(q.text));
    // 9 graphs' queries, the count behind "Devices reporting", and 4 alarms.
    assert.equal(queries.length, 14);
    for (const { where, text } of queries) {
      let parsed: ParsedQuery;
      try {
        parsed = parseMetricsInsights(text);
      } catch (e) {
        assert.fail(`${where}: ${text}: ${(e as Error).message}`);
      }
      checkAgainstPublisher(parsed, where, namespace);
    }
  }
});

test("the graphs show the top N devices and name each line by its device", () => {
  for (const [n, t] of [[10, synth()], [25, synth({ dashboardTopN: 25 })]] as const) {
    for (const w of dashboardBody(t).widgets.filter((w) => w.type === "metric")) {
      for (const m of metricEntries(w).filter((m) => isMetricsInsights(m.expression ?? ""))) {
        const q = parseMetricsInsights(m.expression);
        if (m.visible === false) {
          continue; // the input of "Devices reporting"
        }
        assert.equal(q.limit, n, `${w.properties.title}: LIMIT`);
        assert.ok(q.orderBy, `${w.properties.title}: ORDER BY picks which ${n}`);
        assert.deepEqual(q.groupBy, [q.namespace === "AWS/Logs" ? "LogGroupName" : "InstanceId"]);
        assert.match(m.label, /^\$\{LABEL\}/, `${w.properties.title}: label`);
      }
    }
  }
});

test("devices reporting counts the devices that sent a value in each period", () => {
  const w = dashboardBody(synth()).widgets.find((w) => w.properties.title === "Devices reporting");
  assert.ok(w);
  const [sum, input] = metricEntries(w);
  assert.equal(sum.expression, `SUM(${input.id} * 0 + 1)`);
  assert.equal(input.visible, false);
  const q = parseMetricsInsights(input.expression);
  assert.equal(q.fn, "COUNT");
  assert.deepEqual(q.groupBy, ["InstanceId"]);
});

test("the error lines widget reads every log group under the prefix, newest first", () => {
  for (const prefix of ["/system/", "/fleet/"]) {
    const logs = dashboardBody(synth({ logGroupPrefix: prefix })).widgets.filter((w) => w.type === "log");
    assert.equal(logs.length, 1);
    const query: string = logs[0].properties.query;
    const [source, ...lines] = query.split("\n| ");
    assert.equal(source, `SOURCE logGroups(namePrefix: ["${prefix}"], class: "STANDARD")`);
    assert.deepEqual(lines[0], "fields @timestamp, @log, @logStream, @message");
    assert.match(lines[1], /^filter @message like \/\(\?i\)\(error\|/);
    assert.deepEqual(lines.slice(2), ["sort @timestamp desc", "limit 50"]);
    assert.equal(logs[0].properties.region, "eu-west-1");
    assert.equal(logs[0].properties.view, "table");
  }
});

test("each alarm: its query, threshold, comparison, topic and missing data", () => {
  const t = synth();
  const found = alarms(t);
  const topic = { Ref: topicId(t) };
  const expected: Record<string, object> = {
    "PublisherBackend-device-silent": {
      metric: "CPUUtilization",
      fn: "COUNT",
      orderBy: { fn: "COUNT", direction: "ASC" },
      ComparisonOperator: "LessThanThreshold",
      Threshold: 1,
      EvaluationPeriods: 12,
      DatapointsToAlarm: 3,
      TreatMissingData: "breaching",
    },
    "PublisherBackend-disk-used": {
      metric: "disk_used_percent",
      fn: "MAX",
      orderBy: { fn: "MAX", direction: "DESC" },
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 90,
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      TreatMissingData: "notBreaching",
    },
    "PublisherBackend-temperature": {
      metric: "temperature_celsius",
      fn: "MAX",
      orderBy: { fn: "MAX", direction: "DESC" },
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 80,
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      TreatMissingData: "notBreaching",
    },
    "PublisherBackend-under-voltage": {
      metric: "throttling_under_voltage_since_boot",
      fn: "MAX",
      orderBy: { fn: "MAX", direction: "DESC" },
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 0,
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      TreatMissingData: "notBreaching",
    },
  };
  assert.deepEqual([...found.keys()].sort(), Object.keys(expected).sort());
  for (const [name, a] of found) {
    const p = a.Properties;
    // One query, returned, 5-minute period: a Metrics Insights alarm (multi-time-series,
    // one contributor per device) takes exactly one query and no other metrics.
    assert.equal(p.Metrics.length, 1, name);
    assert.equal(p.Metrics[0].ReturnData, true, name);
    assert.equal(p.Metrics[0].Period, 300, name);
    assert.equal(p.MetricName, undefined, name);
    const q = parseMetricsInsights(p.Metrics[0].Expression);
    assert.deepEqual(q.groupBy, ["InstanceId"], `${name}: one series per device`);
    assert.equal(q.limit, undefined, `${name}: no LIMIT, so no device is left out under 500`);
    // Metrics Insights alarms evaluate at most the latest 3 hours.
    assert.ok(p.EvaluationPeriods * 300 <= 3 * 3600, name);
    assert.ok(p.DatapointsToAlarm <= p.EvaluationPeriods, name);
    assert.deepEqual(
      {
        metric: q.metric,
        fn: q.fn,
        orderBy: q.orderBy,
        ComparisonOperator: p.ComparisonOperator,
        Threshold: p.Threshold,
        EvaluationPeriods: p.EvaluationPeriods,
        DatapointsToAlarm: p.DatapointsToAlarm,
        TreatMissingData: p.TreatMissingData,
      },
      expected[name],
      name,
    );
    assert.deepEqual(p.AlarmActions, [topic], `${name}: notifies the topic`);
    assert.equal(p.OKActions, undefined, name);
    assert.equal(p.InsufficientDataActions, undefined, name);
  }
});

test("the thresholds and minutes come from context", () => {
  const found = alarms(synth({ silentMinutes: 30, diskUsedPercent: 80, temperatureCelsius: 70 }));
  const silent = found.get("PublisherBackend-device-silent")!.Properties;
  assert.equal(silent.DatapointsToAlarm, 6);
  assert.equal(silent.EvaluationPeriods, 15);
  assert.equal(found.get("PublisherBackend-disk-used")!.Properties.Threshold, 80);
  assert.equal(found.get("PublisherBackend-temperature")!.Properties.Threshold, 70);
});

test("dashboard=false leaves the dashboard out, alarms=false the alarms and topic", () => {
  const count = (t: Template, type: string) => Object.keys(resources(t, type)).length;
  const all = synth();
  assert.equal(count(all, "AWS::CloudWatch::Dashboard"), 1);
  assert.equal(count(all, "AWS::CloudWatch::Alarm"), 4);
  assert.equal(count(all, "AWS::SNS::Topic"), 1);

  const noDashboard = synth({ dashboard: false });
  assert.equal(count(noDashboard, "AWS::CloudWatch::Dashboard"), 0);
  assert.equal(count(noDashboard, "AWS::CloudWatch::Alarm"), 4);
  assert.deepEqual(Object.keys(noDashboard.findOutputs("DashboardName")), []);

  const noAlarms = synth({ alarms: false });
  assert.equal(count(noAlarms, "AWS::CloudWatch::Dashboard"), 1);
  assert.equal(count(noAlarms, "AWS::CloudWatch::Alarm"), 0);
  assert.equal(count(noAlarms, "AWS::SNS::Topic"), 0);
  assert.ok(!dashboardBody(noAlarms).widgets.some((w) => w.type === "alarm"));
  assert.deepEqual(Object.keys(noAlarms.findOutputs("AlarmTopicArn")), []);

  const neither = synth({ dashboard: false, alarms: false });
  for (const type of ["AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm", "AWS::SNS::Topic"]) {
    assert.equal(count(neither, type), 0, type);
  }
  assert.equal(count(neither, "AWS::IAM::Role"), 1, "the backend itself stays");
});

test("alarmEmail adds exactly one e-mail subscription; without it there is none", () => {
  assert.equal(Object.keys(resources(synth(), "AWS::SNS::Subscription")).length, 0);
  const t = synth({ alarmEmail: "ops@example.com" });
  const subs = Object.values(resources(t, "AWS::SNS::Subscription"));
  assert.equal(subs.length, 1);
  assert.equal(subs[0].Properties.Protocol, "email");
  assert.equal(subs[0].Properties.Endpoint, "ops@example.com");
  assert.deepEqual(subs[0].Properties.TopicArn, { Ref: topicId(t) });
  t.hasOutput("AlarmTopicArn", { Value: { Ref: topicId(t) } });
});

test("without dashboardNamespace: System/Default if allowed, else the first full namespace", () => {
  const namespaceOf = (t: Template) =>
    parseMetricsInsights(alarms(t).get("PublisherBackend-disk-used")!.Properties.Metrics[0].Expression)
      .namespace;
  assert.equal(namespaceOf(synth()), "System/Default");
  assert.equal(namespaceOf(synth({ metricNamespaces: ["Fleet/*", "Fleet/Pi", "Fleet/Mac"] })), "Fleet/Pi");
  assert.equal(namespaceOf(synth({ metricNamespaces: ["Fleet/Pi", "System/*"] })), "System/Default");
});

test("the default namespace is the one provision and the Debian package configure", () => {
  const provision = fs.readFileSync(path.join(REPO, "src", "commands", "provision.rs"), "utf8");
  const postinst = fs.readFileSync(path.join(REPO, "debian", "postinst"), "utf8");
  assert.match(provision, new RegExp(`"namespace": "${FLEET_DEFAULTS.dashboardNamespace}"`));
  assert.match(postinst, new RegExp(`"namespace": "${FLEET_DEFAULTS.dashboardNamespace}"`));
});

test("bad fleet settings are refused, each named", () => {
  assert.throws(
    () => synth({ dashboardNamespace: "Other/Pi" }),
    /dashboardNamespace: Other\/Pi .*System\/\*/,
  );
  assert.throws(
    () => synth({ metricNamespaces: ["Fleet/Pi"], dashboardNamespace: "System/Default" }),
    /dashboardNamespace/,
  );
  assert.throws(() => synth({ metricNamespaces: ["Fleet/*"] }), /dashboardNamespace: give/);
  assert.doesNotThrow(() => synth({ metricNamespaces: ["Fleet/*"], dashboardNamespace: "Fleet/Pi" }));
  assert.throws(() => synth({ dashboardTopN: 0 }), /dashboardTopN/);
  assert.throws(() => synth({ dashboardTopN: 2.5 }), /dashboardTopN/);
  assert.throws(() => synth({ silentMinutes: 12 }), /silentMinutes: 12/);
  assert.throws(() => synth({ silentMinutes: 5 }), /silentMinutes/);
  assert.throws(() => synth({ silentMinutes: 125 }), /silentMinutes/);
  assert.throws(() => synth({ diskUsedPercent: 100 }), /diskUsedPercent/);
  assert.throws(() => synth({ temperatureCelsius: -1 }), /temperatureCelsius/);
  assert.throws(() => synth({ alarmEmail: "ops" }), /alarmEmail/);
  assert.throws(() => synth({ alarms: false, alarmEmail: "ops@example.com" }), /alarmEmail: alarms=false/);
  // All at once.
  assert.throws(() => synth({ dashboardTopN: 0, silentMinutes: 7 }), /dashboardTopN[^]*silentMinutes/);
});
