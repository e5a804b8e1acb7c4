// What the fleet's dashboard and alarms ask CloudWatch: the Metrics Insights queries, and the
// rules the settings must keep. Pure functions, so the tests read them without a stack.
//
// Every query is over the metrics the publisher sends with the fleet's config (provision's
// device config, the Debian package's, configs/raspberry-pi.json): the original 13 with the
// dimensions InstanceId and Hostname, and `disk`, `temperature` and `throttling` with `host`,
// their own dimensions and the appended InstanceId. SCHEMA(...) names those dimension sets
// exactly, so a query matches only what the publisher sends, and GROUP BY InstanceId gives one
// series per device: a device added later shows up without a change here.

/** The period of every query, graph and alarm: the Debian package's devices send every 300 s
 * (provision's every 60 s), and a shorter period would show a healthy device as silent. */
export const PERIOD_SECONDS = 300;

/** Metrics Insights returns at most 500 series a query; ORDER BY decides which. */
export const MAX_SERIES = 500;

/** The dimension sets the publisher sends, by section (fleet configs: `drop_device` on disk). */
export const DIMENSIONS = {
  summary: ["InstanceId", "Hostname"],
  disk: ["host", "InstanceId", "fstype", "path"],
  temperature: ["host", "InstanceId", "sensor"],
  throttling: ["host", "InstanceId"],
} as const;

export type Aggregate = "AVG" | "COUNT" | "MAX" | "MIN" | "SUM";

/** A name in double quotes, with `"` and `\` escaped. */
export function quoted(name: string): string {
  return `"${name.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A name as Metrics Insights takes it: quoted unless it is letters, digits and `_`. */
export function identifier(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : quoted(name);
}

export interface Query {
  aggregate: Aggregate;
  metric: string;
  namespace: string;
  dimensions: readonly string[];
  groupBy?: string;
  order?: "ASC" | "DESC";
  limit?: number;
}

/** `SELECT f(metric) FROM SCHEMA(ns, dims) [GROUP BY g] [ORDER BY f() dir] [LIMIT n]` */
export function render(q: Query): string {
  const schema = [quoted(q.namespace), ...q.dimensions.map(identifier)].join(", ");
  let text = `SELECT ${q.aggregate}(${identifier(q.metric)}) FROM SCHEMA(${schema})`;
  if (q.groupBy) {
    text += ` GROUP BY ${identifier(q.groupBy)}`;
  }
  if (q.order) {
    text += ` ORDER BY ${q.aggregate}() ${q.order}`;
  }
  if (q.limit !== undefined) {
    text += ` LIMIT ${q.limit}`;
  }
  return text;
}

/** Per device, highest first: the N devices a graph shows. */
function topDevices(
  aggregate: Aggregate,
  metric: string,
  namespace: string,
  dimensions: readonly string[],
  limit?: number,
): string {
  return render({ aggregate, metric, namespace, dimensions, groupBy: "InstanceId", order: "DESC", limit });
}

/** The dashboard's graphs, one query each (a widget may hold one Metrics Insights query). */
export function dashboardQueries(namespace: string, topN: number) {
  return {
    cpu: topDevices("AVG", "CPUUtilization", namespace, DIMENSIONS.summary, topN),
    memory: topDevices("AVG", "MemoryUtilization", namespace, DIMENSIONS.summary, topN),
    disk: topDevices("MAX", "disk_used_percent", namespace, DIMENSIONS.disk, topN),
    temperature: topDevices("MAX", "temperature_celsius", namespace, DIMENSIONS.temperature, topN),
    throttled: topDevices("MAX", "throttling_throttled", namespace, DIMENSIONS.throttling, topN),
    underVoltage: topDevices(
      "MAX",
      "throttling_under_voltage_since_boot",
      namespace,
      DIMENSIONS.throttling,
      topN,
    ),
    // One series per device that sent anything in a period; the math below counts them.
    reporting: render({
      aggregate: "COUNT",
      metric: "CPUUtilization",
      namespace,
      dimensions: DIMENSIONS.summary,
      groupBy: "InstanceId",
    }),
    // The devices with the fewest values: one that went quiet sinks to the bottom here.
    quietest: render({
      aggregate: "COUNT",
      metric: "CPUUtilization",
      namespace,
      dimensions: DIMENSIONS.summary,
      groupBy: "InstanceId",
      order: "ASC",
      limit: topN,
    }),
    logBytes: render({
      aggregate: "SUM",
      metric: "IncomingBytes",
      namespace: "AWS/Logs",
      dimensions: ["LogGroupName"],
      groupBy: "LogGroupName",
      order: "DESC",
      limit: topN,
    }),
    logEvents: render({
      aggregate: "SUM",
      metric: "IncomingLogEvents",
      namespace: "AWS/Logs",
      dimensions: ["LogGroupName"],
      groupBy: "LogGroupName",
      order: "DESC",
      limit: topN,
    }),
  };
}

/** Metric math over `reporting`: 1 for each device with a value in the period, summed. */
export const REPORTING_EXPRESSION = "SUM(reporting * 0 + 1)";

/** The alarms' queries: one series per device (each a contributor the alarm names), ordered so
 * that past 500 devices the ones nearest to alarming are the ones returned. */
export function alarmQueries(namespace: string) {
  return {
    silent: render({
      aggregate: "COUNT",
      metric: "CPUUtilization",
      namespace,
      dimensions: DIMENSIONS.summary,
      groupBy: "InstanceId",
      order: "ASC",
    }),
    disk: topDevices("MAX", "disk_used_percent", namespace, DIMENSIONS.disk),
    temperature: topDevices("MAX", "temperature_celsius", namespace, DIMENSIONS.temperature),
    underVoltage: topDevices(
      "MAX",
      "throttling_under_voltage_since_boot",
      namespace,
      DIMENSIONS.throttling,
    ),
  };
}

/** The Logs Insights query of the newest error lines, over every log group under the prefix. */
export function errorLinesQuery(logGroupPrefix: string, limit: number): string {
  return [
    // The console's form for log groups chosen by prefix (Standard class).
    `SOURCE logGroups(namePrefix: [${JSON.stringify(logGroupPrefix)}], class: "STANDARD")`,
    "fields @timestamp, @log, @logStream, @message",
    "filter @message like /(?i)(error|fail|fatal|panic|critical|segfault|oom-kill|under-voltage)/",
    "sort @timestamp desc",
    `limit ${limit}`,
  ].join("\n| ");
}

/** How many 5-minute periods a device must be silent for, and how far back the alarm looks. */
export function silentEvaluation(silentMinutes: number): { datapoints: number; periods: number } {
  const datapoints = silentMinutes / (PERIOD_SECONDS / 60);
  // Missing periods count only while the device still has a value in the evaluation range
  // (a series exists only with data), so the alarm looks 45 minutes further back than it
  // needs to be silent: at most 3 hours, the most a Metrics Insights alarm evaluates.
  return { datapoints, periods: datapoints + 9 };
}

/** `*` and `?` wildcards, as the role's `cloudwatch:namespace` condition reads them. */
export function namespaceAllowed(namespace: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    const regex = pattern
      .split("")
      .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
      .join("");
    return new RegExp(`^${regex}$`).test(namespace);
  });
}
