// The synthesized template, checked offline (no AWS account): each property the devices and
// the publisher rely on, and that the role allows nothing more than the publisher's calls.

import { test } from "node:test";
import * as assert from "node:assert/strict";
import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { PublisherBackendStack, PublisherBackendProps } from "../lib/publisher-backend-stack";

const ENV = { account: "123456789012", region: "eu-west-1" };

function synth(props: PublisherBackendProps = {}): Template {
  const app = new App();
  return Template.fromStack(new PublisherBackendStack(app, "PublisherBackend", { env: ENV, ...props }));
}

type Resource = { Type: string; Properties: Record<string, any> };

function only(template: Template, type: string): Resource {
  const found = Object.values(template.findResources(type)) as Resource[];
  assert.equal(found.length, 1, `one ${type}`);
  return found[0];
}

function logicalId(template: Template, type: string): string {
  const ids = Object.keys(template.findResources(type));
  assert.equal(ids.length, 1, `one ${type}`);
  return ids[0];
}

test("the user pool takes no sign-ups and asks for strong passwords", () => {
  const t = synth();
  t.hasResourceProperties("AWS::Cognito::UserPool", {
    AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
    Policies: {
      PasswordPolicy: {
        MinimumLength: 32,
        RequireLowercase: true,
        RequireUppercase: true,
        RequireNumbers: true,
        RequireSymbols: true,
      },
    },
  });
  const pool = only(t, "AWS::Cognito::UserPool");
  assert.ok(pool.Properties.Policies.PasswordPolicy.MinimumLength >= 32);
});

test("the app client allows password and refresh-token sign-in only, without a secret", () => {
  const t = synth();
  const client = only(t, "AWS::Cognito::UserPoolClient");
  assert.deepEqual([...client.Properties.ExplicitAuthFlows].sort(), [
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
  ]);
  assert.equal(client.Properties.GenerateSecret, false);
  assert.deepEqual(client.Properties.UserPoolId, { Ref: logicalId(t, "AWS::Cognito::UserPool") });
});

test("the identity pool has no unauthenticated identities and trusts that client", () => {
  const t = synth();
  const pool = only(t, "AWS::Cognito::IdentityPool");
  assert.equal(pool.Properties.AllowUnauthenticatedIdentities, false);
  assert.equal(pool.Properties.AllowClassicFlow, false);
  assert.equal(pool.Properties.CognitoIdentityProviders.length, 1);
  assert.deepEqual(pool.Properties.CognitoIdentityProviders[0].ClientId, {
    Ref: logicalId(t, "AWS::Cognito::UserPoolClient"),
  });
  const attachment = only(t, "AWS::Cognito::IdentityPoolRoleAttachment");
  assert.deepEqual(Object.keys(attachment.Properties.Roles), ["authenticated"]);
  assert.equal(attachment.Properties.RoleMappings, undefined);
  // One role only: no unauthenticated role anywhere.
  assert.equal(Object.keys(t.findResources("AWS::IAM::Role")).length, 1);
});

test("the role trusts only that identity pool's authenticated identities", () => {
  const t = synth();
  const role = only(t, "AWS::IAM::Role");
  const statements = role.Properties.AssumeRolePolicyDocument.Statement;
  assert.equal(statements.length, 1);
  const [trust] = statements;
  assert.equal(trust.Effect, "Allow");
  assert.equal(trust.Action, "sts:AssumeRoleWithWebIdentity");
  assert.deepEqual(trust.Principal, { Federated: "cognito-identity.amazonaws.com" });
  assert.deepEqual(trust.Condition, {
    StringEquals: {
      "cognito-identity.amazonaws.com:aud": { Ref: logicalId(t, "AWS::Cognito::IdentityPool") },
    },
    "ForAnyValue:StringLike": { "cognito-identity.amazonaws.com:amr": "authenticated" },
  });
});

function permissions(t: Template): any[] {
  const role = only(t, "AWS::IAM::Role");
  assert.equal(Object.keys(t.findResources("AWS::IAM::Policy")).length, 0, "no other policies");
  assert.equal(role.Properties.ManagedPolicyArns, undefined, "no managed policies");
  return role.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

test("the role may make exactly the publisher's calls, no wildcard actions", () => {
  const statements = permissions(synth());
  const actions = statements.flatMap((s) => asList(s.Action)).sort();
  assert.deepEqual(actions, [
    "cloudwatch:PutMetricData",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
  ]);
  for (const s of statements) {
    assert.equal(s.Effect, "Allow");
    assert.equal(s.NotAction, undefined);
    assert.equal(s.NotResource, undefined);
    for (const a of asList(s.Action)) {
      assert.ok(!String(a).includes("*"), `wildcard action ${a}`);
    }
  }
});

test("metrics only to the configured namespaces, logs only to the configured groups", () => {
  const statements = permissions(synth());
  const metrics = statements.find((s) => asList(s.Action).includes("cloudwatch:PutMetricData"));
  assert.deepEqual(metrics.Condition, { StringLike: { "cloudwatch:namespace": ["System/*"] } });
  const logs = statements.filter((s) => asList(s.Action).some((a) => String(a).startsWith("logs:")));
  assert.equal(logs.length, 2);
  const resources = logs.flatMap((s) => asList(s.Resource).map((r) => JSON.stringify(r)));
  for (const r of resources) {
    assert.ok(r.includes(":log-group:/system/*"), `logs resource ${r}`);
    assert.ok(r.includes("eu-west-1") && r.includes("123456789012"), `logs resource ${r}`);
  }
  const custom = permissions(
    synth({ metricNamespaces: ["Fleet/Pi", "Fleet/Mac"], logGroupPrefix: "/fleet/" }),
  );
  const m = custom.find((s) => asList(s.Action).includes("cloudwatch:PutMetricData"));
  assert.deepEqual(m.Condition, { StringLike: { "cloudwatch:namespace": ["Fleet/Pi", "Fleet/Mac"] } });
  for (const s of custom.filter((s) => asList(s.Action).some((a) => String(a).startsWith("logs:")))) {
    for (const r of asList(s.Resource)) {
      assert.ok(JSON.stringify(r).includes(":log-group:/fleet/*"), JSON.stringify(r));
    }
  }
});

test("the stack outputs what provisioning and the devices need", () => {
  const t = synth({ dashboard: false, alarms: false });
  const outputs = t.findOutputs("*");
  assert.deepEqual(Object.keys(outputs).sort(), [
    "AccountId",
    "AppClientId",
    "IdentityPoolId",
    "Region",
    "UserPoolId",
  ]);
  // With the fleet's dashboard and alarms (the default), their topic and dashboard too.
  assert.deepEqual(Object.keys(synth().findOutputs("*")).sort(), [
    "AccountId",
    "AlarmTopicArn",
    "AppClientId",
    "DashboardName",
    "IdentityPoolId",
    "Region",
    "UserPoolId",
  ]);
  t.hasOutput("Region", { Value: "eu-west-1" });
  t.hasOutput("AccountId", { Value: "123456789012" });
  t.hasOutput("UserPoolId", { Value: { Ref: logicalId(t, "AWS::Cognito::UserPool") } });
  t.hasOutput("IdentityPoolId", { Value: { Ref: logicalId(t, "AWS::Cognito::IdentityPool") } });
  t.hasOutput("AppClientId", { Value: { Ref: logicalId(t, "AWS::Cognito::UserPoolClient") } });
});

test("bad settings are refused", () => {
  assert.throws(() => synth({ metricNamespaces: [] }), /metricNamespaces/);
  assert.throws(() => synth({ logGroupPrefix: "" }), /logGroupPrefix/);
});

test("the user pool is kept if the stack is deleted", () => {
  synth().hasResource("AWS::Cognito::UserPool", {
    DeletionPolicy: "Retain",
    Properties: Match.objectLike({ DeletionProtection: "ACTIVE" }),
  });
});
