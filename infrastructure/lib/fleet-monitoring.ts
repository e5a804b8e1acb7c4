// The fleet's dashboard and alarms: one CloudWatch dashboard and four alarms built on Metrics
// Insights queries (lib/fleet-queries.ts), so neither changes when devices are added. The
// alarms notify one SNS topic; each names the devices it is about (one contributor per device).

import { Aws, CfnOutput, Duration } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as actions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import { Construct } from "constructs";
import {
  alarmQueries,
  dashboardQueries,
  errorLinesQuery,
  PERIOD_SECONDS,
  REPORTING_EXPRESSION,
  silentEvaluation,
} from "./fleet-queries";

export interface FleetMonitoringProps {
  /** Used to name the dashboard and the alarms. */
  readonly name: string;
  /** The namespace the devices publish to. */
  readonly namespace: string;
  /** The devices' log groups start with this. */
  readonly logGroupPrefix: string;
  readonly dashboard: boolean;
  readonly alarms: boolean;
  /** Devices (or log groups) a graph shows. */
  readonly topN: number;
  readonly silentMinutes: number;
  readonly diskUsedPercent: number;
  readonly temperatureCelsius: number;
  /** Subscribed to the alarms' topic when given. */
  readonly alarmEmail?: string;
}

const PERIOD = Duration.seconds(PERIOD_SECONDS);

/** Newest error lines the log widget lists. */
export const ERROR_LINES = 50;

export class FleetMonitoring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly topic?: sns.Topic;
  readonly dashboard?: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: FleetMonitoringProps) {
    super(scope, id);
    if (props.alarms) {
      this.topic = new sns.Topic(this, "AlarmTopic", {
        displayName: `${props.name} fleet alarms`,
      });
      if (props.alarmEmail) {
        this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
      }
      this.alarms = this.makeAlarms(props, this.topic);
      new CfnOutput(scope, "AlarmTopicArn", {
        value: this.topic.topicArn,
        description: "Subscribe to this SNS topic for the fleet's alarms",
      });
    }
    if (props.dashboard) {
      this.dashboard = this.makeDashboard(props);
      new CfnOutput(scope, "DashboardName", { value: this.dashboard.dashboardName });
    }
  }

  private makeAlarms(props: FleetMonitoringProps, topic: sns.ITopic): cloudwatch.Alarm[] {
    const q = alarmQueries(props.namespace);
    const silent = silentEvaluation(props.silentMinutes);
    const specs: Array<{ id: string; description: string } & cloudwatch.AlarmProps> = [
      {
        id: "DeviceSilent",
        alarmName: `${props.name}-device-silent`,
        description:
          `A device sent no CPUUtilization for ${props.silentMinutes} minutes ` +
          `(${silent.datapoints} of the last ${silent.periods} five-minute periods without a value)`,
        metric: query(q.silent),
        // A device that reports has at least one value a period: only a missing one breaches.
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        threshold: 1,
        evaluationPeriods: silent.periods,
        datapointsToAlarm: silent.datapoints,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      },
      {
        id: "DiskFull",
        alarmName: `${props.name}-disk-used`,
        description: `A device's file system is more than ${props.diskUsedPercent}% used (two readings)`,
        metric: query(q.disk),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: props.diskUsedPercent,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      },
      {
        id: "TooHot",
        alarmName: `${props.name}-temperature`,
        description: `A device's sensor read above ${props.temperatureCelsius} °C for 15 minutes`,
        metric: query(q.temperature),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: props.temperatureCelsius,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      },
      {
        id: "UnderVoltage",
        alarmName: `${props.name}-under-voltage`,
        description:
          "A Raspberry Pi's firmware saw under-voltage since boot (a weak power supply); " +
          "it stays in alarm until that device reboots",
        metric: query(q.underVoltage),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: 0,
        evaluationPeriods: 1,
        datapointsToAlarm: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      },
    ];
    return specs.map(({ id, description, ...alarmProps }) => {
      const alarm = new cloudwatch.Alarm(this, id, { ...alarmProps, alarmDescription: description });
      alarm.addAlarmAction(new actions.SnsAction(topic));
      return alarm;
    });
  }

  private makeDashboard(props: FleetMonitoringProps): cloudwatch.Dashboard {
    const q = dashboardQueries(props.namespace, props.topN);
    const n = props.topN;
    const dashboard = new cloudwatch.Dashboard(this, "Dashboard", {
      dashboardName: `${props.name}-fleet`,
      defaultInterval: Duration.hours(3),
    });
    const graph = (title: string, expression: string, unit?: string) =>
      new cloudwatch.GraphWidget({
        title,
        width: 8,
        height: 6,
        left: [query(expression)],
        leftYAxis:
          unit === "%"
            ? { min: 0, max: 100, label: "%", showUnits: false }
            : { min: 0, label: unit, showUnits: false },
        legendPosition: cloudwatch.LegendPosition.BOTTOM,
      });

    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        width: 24,
        height: 2,
        markdown:
          `# ${props.name} fleet\n` +
          `Metrics in \`${props.namespace}\`, one line per device (\`InstanceId\`), the top ${n} ` +
          `of each graph; logs in the log groups under \`${props.logGroupPrefix}\`. ` +
          "Devices added later appear without a change: every graph is a Metrics Insights query.",
      }),
    );

    const reporting = new cloudwatch.GraphWidget({
      title: "Devices reporting",
      width: props.alarms ? 8 : 12,
      height: 6,
      left: [
        new cloudwatch.MathExpression({
          expression: REPORTING_EXPRESSION,
          usingMetrics: { reporting: query(q.reporting) },
          label: "devices with a value (Metrics Insights counts up to 500)",
          period: PERIOD,
        }),
      ],
      leftYAxis: { min: 0, showUnits: false },
      legendPosition: cloudwatch.LegendPosition.BOTTOM,
    });
    const quietest = new cloudwatch.GraphWidget({
      title: `Quietest ${n} devices: CPUUtilization values a period`,
      width: props.alarms ? 8 : 12,
      height: 6,
      // The newest value's age beside each device: a silent one shows how long it has been.
      left: [query(q.quietest, "${LABEL}: last value ${LAST_TIME_RELATIVE} ago")],
      leftYAxis: { min: 0, showUnits: false },
      legendPosition: cloudwatch.LegendPosition.BOTTOM,
    });
    const second: cloudwatch.IWidget[] = [reporting, quietest];
    if (props.alarms) {
      second.push(
        new cloudwatch.AlarmStatusWidget({
          title: "Fleet alarms",
          width: 8,
          height: 6,
          alarms: this.alarms,
        }),
      );
    }
    dashboard.addWidgets(...second);

    dashboard.addWidgets(
      graph(`CPU: top ${n} devices`, q.cpu, "%"),
      graph(`Memory: top ${n} devices`, q.memory, "%"),
      graph(`Disk used: top ${n} devices (fullest file system)`, q.disk, "%"),
    );
    dashboard.addWidgets(
      graph(`Temperature: hottest ${n} devices`, q.temperature, "°C"),
      graph(`Throttled now: top ${n} devices (1 = yes)`, q.throttled),
      graph(`Under-voltage since boot: top ${n} devices (1 = yes)`, q.underVoltage),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: `Log bytes received (PutLogEvents): top ${n} log groups`,
        width: 12,
        height: 6,
        left: [query(q.logBytes)],
        leftYAxis: { min: 0, showUnits: false },
        legendPosition: cloudwatch.LegendPosition.BOTTOM,
      }),
      new cloudwatch.GraphWidget({
        title: `Log events received (PutLogEvents): top ${n} log groups`,
        width: 12,
        height: 6,
        left: [query(q.logEvents)],
        leftYAxis: { min: 0, showUnits: false },
        legendPosition: cloudwatch.LegendPosition.BOTTOM,
      }),
    );
    dashboard.addWidgets(
      new LogPrefixQueryWidget({
        title: `Newest ${ERROR_LINES} error lines in ${props.logGroupPrefix}*`,
        width: 24,
        height: 8,
        query: errorLinesQuery(props.logGroupPrefix, ERROR_LINES),
      }),
    );
    return dashboard;
  }
}

/** A Metrics Insights query as a metric the graphs and alarms take. Each series keeps
 * CloudWatch's own label, its group (the device's InstanceId, the log group's name): without
 * a label CDK would name every series after the whole query. */
function query(expression: string, label = "${LABEL}"): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({ expression, label, period: PERIOD });
}

/** A Logs Insights widget over log groups chosen by name prefix: CDK's LogQueryWidget names
 * every group (`SOURCE 'group'`), which a fleet that adds a group per device cannot. */
class LogPrefixQueryWidget extends cloudwatch.ConcreteWidget {
  constructor(private readonly props: { title: string; width: number; height: number; query: string }) {
    super(props.width, props.height);
  }

  toJson(): any[] {
    return [
      {
        type: "log",
        width: this.width,
        height: this.height,
        x: this.x,
        y: this.y,
        properties: {
          title: this.props.title,
          region: Aws.REGION,
          view: "table",
          query: this.props.query,
        },
      },
    ];
  }
}
