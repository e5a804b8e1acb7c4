// The backend the publisher's devices sign in to: a Cognito user pool with one user per device
// (made by `amazon-cloudwatch-publisher provision`, never by the devices), an app client for
// password sign-in, an identity pool that trades a signed-in device's id token for AWS
// credentials, and the one role those credentials carry, allowed exactly the calls the
// publisher makes.

import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from "aws-cdk-lib";
import * as cognito from "aws-cdk-lib/aws-cognito";
import * as iam from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";

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
}

export const DEFAULT_METRIC_NAMESPACES = ["System/*"];
export const DEFAULT_LOG_GROUP_PREFIX = "/system/";

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
  }
}
