// The backend the publisher's devices sign in to: a Cognito user pool with one user per device
// (made by `amazon-cloudwatch-publisher provision`, never by the devices), an app client for
// password sign-in, an identity pool that trades a signed-in device's id token for AWS
// credentials, and the one role those credentials carry, allowed exactly the calls the
// publisher makes. Beside it, unless turned off, the fleet's dashboard and alarms
// (lib/fleet-monitoring.ts).

import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from "aws-cdk-lib";
import * as cognito from "aws-cdk-lib/aws-cognito";
import * as iam from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";
import { FleetMonitoring } from "./fleet-monitoring";
import { namespaceAllowed } from "./fleet-queries";

export interface PublisherBackendProps extends StackProps {
  /**
   * CloudWatch namespaces the devices may publish metrics to; `*` and `?` are wildcards.
   * Default: `System/*` (the publisher's default namespace is `System/Default`).
   */
  readonly metricNamespaces?: string[];
  /**
   * Log groups the devices may create and write to: names starting with this.
   * Default: `/system/` (the publisher's default group is `/system/default/{instance_id}`).
   */
  readonly logGroupPrefix?: string;
  /** The fleet's CloudWatch dashboard. Default: true. */
  readonly dashboard?: boolean;
  /** The fleet's alarms and their SNS topic. Default: true. */
  readonly alarms?: boolean;
  /**
   * The namespace the dashboard and the alarms read; one of `metricNamespaces`.
   * Default: `System/Default` (what `provision` and the Debian package configure) where
   * `metricNamespaces` allows it, else the first of `metricNamespaces` without wildcards.
   */
  readonly dashboardNamespace?: string;
  /** Devices (and log groups) each graph shows, 1 to 100. Default: 10. */
  readonly dashboardTopN?: number;
  /** Minutes without a value before a device is reported silent: 10 to 120, a multiple of 5.
   * Default: 15. */
  readonly silentMinutes?: number;
  /** Disk used % above which a device is reported. Default: 90. */
  readonly diskUsedPercent?: number;
  /** Temperature (°C) above which a device is reported. Default: 80. */
  readonly temperatureCelsius?: number;
  /** An e-mail address subscribed to the alarms' topic (it must confirm). Default: none. */
  readonly alarmEmail?: string;
}

export const DEFAULT_METRIC_NAMESPACES = ["System/*"];
export const DEFAULT_LOG_GROUP_PREFIX = "/system/";
export const FLEET_DEFAULTS = {
  dashboardNamespace: "System/Default",
  dashboardTopN: 10,
  silentMinutes: 15,
  diskUsedPercent: 90,
  temperatureCelsius: 80,
};

export class PublisherBackendStack extends Stack {
  constructor(scope: Construct, id: string, props: PublisherBackendProps = {}) {
    super(scope, id, props);
    const namespaces = props.metricNamespaces ?? DEFAULT_METRIC_NAMESPACES;
    const prefix = props.logGroupPrefix ?? DEFAULT_LOG_GROUP_PREFIX;
    if (namespaces.length === 0 || namespaces.some((n) => n.trim() === "")) {
      throw new Error("metricNamespaces: give at least one namespace, none empty");
    }
    if (prefix.length === 0 || /[^A-Za-z0-9_\-/.#]/.test(prefix)) {
      throw new Error("logGroupPrefix: must be a non-empty start of a log group name");
    }

    const userPool = new cognito.UserPool(this, "Devices", {
      userPoolName: `${id}-devices`,
      // Users are devices, made by the operator's provisioning only.
      selfSignUpEnabled: false,
      signInAliases: { username: true },
      signInCaseSensitive: false,
      // Provisioning makes 40-character random passwords; nothing weaker is accepted.
      passwordPolicy: {
        minLength: 32,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(1),
      },
      accountRecovery: cognito.AccountRecovery.NONE,
      mfa: cognito.Mfa.OFF,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const client = userPool.addClient("Publisher", {
      userPoolClientName: "amazon-cloudwatch-publisher",
      generateSecret: false,
      // USER_PASSWORD_AUTH; REFRESH_TOKEN_AUTH is always allowed.
      authFlows: { userPassword: true, userSrp: false, adminUserPassword: false, custom: false },
      preventUserExistenceErrors: true,
      idTokenValidity: Duration.hours(1),
      accessTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(30),
      enableTokenRevocation: true,
    });

    const identityPool = new cognito.CfnIdentityPool(this, "DeviceIdentities", {
      identityPoolName: `${id}_devices`,
      allowUnauthenticatedIdentities: false,
      allowClassicFlow: false,
      cognitoIdentityProviders: [
        {
          clientId: client.userPoolClientId,
          providerName: userPool.userPoolProviderName,
          serverSideTokenCheck: true,
        },
      ],
    });

    const logGroups = `arn:${this.partition}:logs:${this.region}:${this.account}:log-group:${prefix}*`;
    const role = new iam.Role(this, "DeviceRole", {
      description: "What a signed-in amazon-cloudwatch-publisher device may do",
      maxSessionDuration: Duration.hours(1),
      assumedBy: new iam.FederatedPrincipal(
        "cognito-identity.amazonaws.com",
        {
          StringEquals: { "cognito-identity.amazonaws.com:aud": identityPool.ref },
          "ForAnyValue:StringLike": { "cognito-identity.amazonaws.com:amr": "authenticated" },
        },
        "sts:AssumeRoleWithWebIdentity",
      ),
      inlinePolicies: {
        Publish: new iam.PolicyDocument({
          statements: [
            // PutMetricData has no resources to name; the namespace condition limits it.
            new iam.PolicyStatement({
              sid: "PutMetrics",
              actions: ["cloudwatch:PutMetricData"],
              resources: ["*"],
              conditions: { StringLike: { "cloudwatch:namespace": namespaces } },
            }),
            new iam.PolicyStatement({
              sid: "ManageLogGroups",
              actions: [
                "logs:CreateLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DescribeLogGroups",
              ],
              resources: [logGroups],
            }),
            new iam.PolicyStatement({
              sid: "WriteLogs",
              actions: ["logs:CreateLogStream", "logs:PutLogEvents"],
              resources: [`${logGroups}:log-stream:*`],
            }),
          ],
        }),
      },
    });

    new cognito.CfnIdentityPoolRoleAttachment(this, "DeviceRoles", {
      identityPoolId: identityPool.ref,
      roles: { authenticated: role.roleArn },
    });

    new CfnOutput(this, "Region", { value: this.region });
    new CfnOutput(this, "AccountId", { value: this.account });
    new CfnOutput(this, "UserPoolId", { value: userPool.userPoolId });
    new CfnOutput(this, "IdentityPoolId", { value: identityPool.ref });
    new CfnOutput(this, "AppClientId", { value: client.userPoolClientId });

    const dashboard = props.dashboard ?? true;
    const alarms = props.alarms ?? true;
    if (!alarms && props.alarmEmail !== undefined) {
      throw new Error("alarmEmail: alarms=false leaves no alarms to send mail about");
    }
    if (dashboard || alarms) {
      new FleetMonitoring(this, "Fleet", {
        name: id,
        dashboard,
        alarms,
        logGroupPrefix: prefix,
        ...fleetSettings(props, namespaces),
      });
    }
  }
}

/** The dashboard's and alarms' settings, defaults filled in; every rule broken is reported. */
function fleetSettings(props: PublisherBackendProps, namespaces: string[]) {
  const s = {
    namespace: props.dashboardNamespace ?? defaultNamespace(namespaces),
    topN: props.dashboardTopN ?? FLEET_DEFAULTS.dashboardTopN,
    silentMinutes: props.silentMinutes ?? FLEET_DEFAULTS.silentMinutes,
    diskUsedPercent: props.diskUsedPercent ?? FLEET_DEFAULTS.diskUsedPercent,
    temperatureCelsius: props.temperatureCelsius ?? FLEET_DEFAULTS.temperatureCelsius,
    alarmEmail: props.alarmEmail,
  };
  const errors: string[] = [];
  if (s.namespace === undefined) {
    errors.push(
      "dashboardNamespace: give the namespace the devices publish to " +
        `(metricNamespaces ${namespaces.join(", ")} names none without wildcards)`,
    );
  } else if (!namespaceAllowed(s.namespace, namespaces)) {
    errors.push(
      `dashboardNamespace: ${s.namespace} is not one the devices may publish to ` +
        `(metricNamespaces: ${namespaces.join(", ")})`,
    );
  }
  if (!Number.isInteger(s.topN) || s.topN < 1 || s.topN > 100) {
    errors.push(`dashboardTopN: ${s.topN} is not a whole number from 1 to 100`);
  }
  const m = s.silentMinutes;
  if (!Number.isInteger(m) || m % 5 !== 0 || m < 10 || m > 120) {
    errors.push(`silentMinutes: ${s.silentMinutes} is not a multiple of 5 from 10 to 120`);
  }
  if (!Number.isFinite(s.diskUsedPercent) || s.diskUsedPercent <= 0 || s.diskUsedPercent >= 100) {
    errors.push(`diskUsedPercent: ${s.diskUsedPercent} is not between 0 and 100`);
  }
  const c = s.temperatureCelsius;
  if (!Number.isFinite(c) || c <= 0 || c > 125) {
    errors.push(`temperatureCelsius: ${s.temperatureCelsius} is not above 0 and at most 125`);
  }
  if (s.alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(s.alarmEmail)) {
    errors.push(`alarmEmail: ${s.alarmEmail} is not an e-mail address`);
  }
  if (errors.length > 0) {
    throw new Error(errors.join("\n"));
  }
  return { ...s, namespace: s.namespace as string };
}

/** System/Default where the devices may publish to it, else the first namespace named in full. */
function defaultNamespace(namespaces: string[]): string | undefined {
  if (namespaceAllowed(FLEET_DEFAULTS.dashboardNamespace, namespaces)) {
    return FLEET_DEFAULTS.dashboardNamespace;
  }
  return namespaces.find((n) => !/[*?]/.test(n));
}
