// The Metrics Insights parser the fleet tests check queries with: it takes the documentation's
// examples and refuses what breaks the grammar, so a passing fleet test means something.

import { test } from "node:test";
import * as assert from "node:assert/strict";
import { parseMetricsInsights } from "./support/metrics-insights";

test("the documentation's example queries parse", () => {
  const examples = [
    'SELECT AVG(CPUUtilization) FROM "AWS/EC2"',
    'SELECT AVG(CPUUtilization) FROM SCHEMA("AWS/EC2")',
    'SELECT AVG(CPUUtilization) FROM SCHEMA("AWS/EC2", InstanceId)',
    'SELECT SUM(BytesDownloaded) FROM SCHEMA("AWS/S3", BucketName, FilterId) ' +
      "WHERE FilterId = 'EntireBucket' GROUP BY BucketName",
    'SELECT MAX(mem_used_percent) FROM "CWAgent" GROUP BY InstanceId ORDER BY MAX() DESC',
    "SELECT AVG(CPUUtilization) FROM \"AWS/EC2\" WHERE InstanceType != 'c3.4xlarge' " +
      "GROUP BY InstanceType ORDER BY AVG() ASC LIMIT 10",
    "select count(x) from Custom where (a = 'b' or c <> 'd') and e = 'f'",
  ];
  for (const q of examples) {
    assert.doesNotThrow(() => parseMetricsInsights(q), q);
  }
});

test("the parts of a query are read", () => {
  const q = parseMetricsInsights(
    'SELECT MAX(disk_used_percent) FROM SCHEMA("System/Default", host, InstanceId, fstype, path) ' +
      "GROUP BY InstanceId ORDER BY MAX() DESC LIMIT 10",
  );
  assert.deepEqual(q, {
    fn: "MAX",
    metric: "disk_used_percent",
    namespace: "System/Default",
    schema: ["host", "InstanceId", "fstype", "path"],
    where: [],
    groupBy: ["InstanceId"],
    orderBy: { fn: "MAX", direction: "DESC" },
    limit: 10,
  });
  assert.equal(parseMetricsInsights('SELECT SUM(x) FROM "N"').schema, undefined);
});

test("what breaks the grammar is refused", () => {
  const bad: Array<[string, RegExp]> = [
    ["SELECT P99(CPUUtilization) FROM \"AWS/EC2\"", /AVG, COUNT, MAX, MIN, SUM/],
    ["SELECT AVG(CPUUtilization)", /expected FROM/],
    ["SELECT AVG(CPUUtilization) FROM AWS/EC2", /unexpected "\/"/],
    ['SELECT AVG(CPUUtilization) FROM SCHEMA("AWS/EC2" InstanceId)', /expected \)/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" GROUP InstanceId', /expected BY/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" ORDER BY AVG DESC', /expected \(/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" LIMIT 0', /1 to 500/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" LIMIT 501', /1 to 500/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" LIMIT ten', /a number after LIMIT/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" WHERE InstanceId = "i-1"', /'label value'/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" WHERE InstanceId LIKE \'i-%\'', /=, != or <>/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2" LIMIT 5 GROUP BY InstanceId', /after the query/],
    ['SELECT AVG(CPUUtilization) FROM "AWS/EC2', /unterminated/],
    ["SUM(reporting)", /expected SELECT/],
  ];
  for (const [q, message] of bad) {
    assert.throws(() => parseMetricsInsights(q), message, q);
  }
});
