//! One line of CloudWatch embedded metric format (EMF): where it asks to be delivered, its time,
//! and whether CloudWatch Logs would extract metrics from it. The document goes on as a log
//! event either way and CloudWatch does the extracting; reading it first lets the publisher
//! count the metric values a document carries, and name the member that spoils one which would
//! publish nothing, instead of leaving the metrics to go missing without a word.
//!
//! The rules are those of "Specification: Embedded metric format" in the CloudWatch User Guide
//! and of the JSON schema it gives, applied strictly where they are explicit:
//!
//! - the document is a JSON object, at most [`MAX_DOCUMENT_BYTES`] long (a CloudWatch Logs
//!   event: "limited to a maximum size of 1 MB");
//! - `_aws` is an object with `Timestamp`, a whole number of milliseconds since the epoch and not
//!   negative ("milliseconds after Jan 1, 1970"; the schema's `integer`, which `1.7e12` is), and
//!   `CloudWatchMetrics`, an array of directives (the schema sets no minimum: an empty one is
//!   valid and defines nothing);
//! - each directive has `Namespace` (a string of 1 to 1024 characters), `Dimensions` (an array
//!   of at least one dimension set; the schema's `minItems: 1`) and `Metrics` (at most 100
//!   definitions);
//! - a dimension set is an array of at most 30 names, each a string of 1 to 250 characters, and
//!   may be empty; each name is a member of the root whose value is a string of at most 1024
//!   characters;
//! - a definition has `Name` (1 to 1024 characters), an optional `Unit` that is one of
//!   CloudWatch's units and an optional `StorageResolution` of 1 or 60 (both "SHOULD" in the
//!   prose, but the schema lists the units, and CloudWatch stores no other resolution);
//! - each `Name` is a member of the root whose value is a number or an array of at most 100
//!   numbers.
//!
//! Where the specification is silent this is lenient: members it does not define are ignored
//! ("Members not recognized by this specification MUST be ignored"), and so are whitespace
//! around the document or at the ends of names, empty dimension values, empty value arrays,
//! metric names repeated within a directive (each is counted), the number of dimension sets,
//! and the timestamp's age (which depends on when the document is sent, not on what it says).
//!
//! One departure from the letter: a metric member may also be an object, as AWS's own emitters
//! write them (the OpenTelemetry collector's `awsemf` exporter, aws-embedded-metrics-java) and
//! CloudWatch reads them. A statistic set (numeric `Count`, `Sum`, `Min` and `Max`) is one
//! value; a histogram (`Values` and `Counts`, arrays of numbers of the same length, at most 100)
//! is one value for each entry of `Values`.
//!
//! A document nested 128 levels deep or more, counting the root, is not read at all: serde_json
//! stops there, which keeps hostile input from overflowing the stack.

use std::fmt;

use serde_json::{Map, Value};

use crate::metric::Unit;

/// Longest document CloudWatch Logs takes as one event: a PutLogEvents request holds at most
/// 1,048,576 bytes, counting 26 bytes for each event besides its message.
pub const MAX_DOCUMENT_BYTES: usize = 1_048_576 - 26;
/// Most metric definitions in one directive's `Metrics`.
pub const MAX_METRICS: usize = 100;
/// Most dimension names in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;
/// Most numbers in a metric's array (or a histogram's `Values`).
pub const MAX_VALUES: usize = 100;
/// Longest namespace, in characters.
pub const MAX_NAMESPACE_CHARS: usize = 1024;
/// Longest metric name, in characters.
pub const MAX_METRIC_NAME_CHARS: usize = 1024;
/// Longest dimension name, in characters.
pub const MAX_DIMENSION_NAME_CHARS: usize = 250;
/// Longest dimension value, in characters.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// How much of a name from the document a reason quotes.
const QUOTE_CHARS: usize = 100;

/// What the publisher needs to know of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    /// `_aws.LogGroupName`, else a top-level `log_group_name` (the older form); None if neither
    /// (or not a non-empty string).
    pub log_group: Option<String>,
    /// `_aws.LogStreamName`, else top-level `log_stream_name`.
    pub log_stream: Option<String>,
    /// `_aws.Timestamp` in milliseconds since the epoch, when present and a valid number.
    pub timestamp_ms: Option<i64>,
    /// Ok(number of metric values it defines) when it is valid EMF; Err(reason) why CloudWatch
    /// would extract no metrics from it, naming the first member at fault.
    pub validity: Result<usize, String>,
}

/// Inspects one document (one line of text). `Err(reason)` when it is not a JSON object at all
/// (or is one nested too deeply to read).
pub fn inspect(text: &str) -> Result<Inspected, String> {
    let root = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(root)) => root,
        Ok(other) => return Err(format!("the line is {}, not a JSON object", kind(&other))),
        Err(e) => return Err(format!("the line is not JSON: {e}")),
    };
    let aws = root.get("_aws").and_then(Value::as_object);
    let name = |in_aws: &str, legacy: &str| {
        aws.and_then(|aws| non_empty(aws.get(in_aws)))
            .or_else(|| non_empty(root.get(legacy)))
    };
    Ok(Inspected {
        log_group: name("LogGroupName", "log_group_name"),
        log_stream: name("LogStreamName", "log_stream_name"),
        timestamp_ms: aws.and_then(|aws| aws.get("Timestamp")).and_then(timestamp),
        validity: validate(text.len(), &root),
    })
}

fn non_empty(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The number of metric values the document defines, or why it defines none.
fn validate(bytes: usize, root: &Map<String, Value>) -> Result<usize, String> {
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the document is {bytes} bytes; at most {MAX_DOCUMENT_BYTES}"
        ));
    }
    let aws = match root.get("_aws") {
        Some(Value::Object(aws)) => aws,
        Some(other) => return Err(format!("`_aws` is {}, not an object", kind(other))),
        None => return Err("`_aws` is missing".to_owned()),
    };
    match aws.get("Timestamp") {
        Some(t) if timestamp(t).is_some() => {}
        Some(t) => {
            return Err(format!(
                "`_aws.Timestamp` is {}, not a whole number of milliseconds since the epoch",
                describe(t)
            ))
        }
        None => return Err("`_aws.Timestamp` is missing".to_owned()),
    }
    let directives = match aws.get("CloudWatchMetrics") {
        Some(Value::Array(directives)) => directives,
        Some(other) => {
            return Err(format!(
                "`_aws.CloudWatchMetrics` is {}, not an array",
                kind(other)
            ))
        }
        None => return Err("`_aws.CloudWatchMetrics` is missing".to_owned()),
    };
    let mut values = 0usize;
    for (i, directive) in directives.iter().enumerate() {
        values = values.saturating_add(directive_values(i, directive, root)?);
    }
    Ok(values)
}

/// Checks `_aws.CloudWatchMetrics[i]` and counts the values its metrics have.
fn directive_values(
    i: usize,
    directive: &Value,
    root: &Map<String, Value>,
) -> Result<usize, String> {
    let at = Directive(i);
    let Value::Object(directive) = directive else {
        return Err(format!("`{at}` is {}, not an object", kind(directive)));
    };

    match directive.get("Namespace") {
        Some(Value::String(namespace)) => {
            check_length(namespace, MAX_NAMESPACE_CHARS, || format!("{at}.Namespace"))?
        }
        Some(other) => {
            return Err(format!("`{at}.Namespace` is {}, not a string", kind(other)));
        }
        None => return Err(format!("`{at}.Namespace` is missing")),
    }

    let sets = match directive.get("Dimensions") {
        Some(Value::Array(sets)) if sets.is_empty() => {
            return Err(format!(
                "`{at}.Dimensions` is empty; it needs at least one dimension set (`[[]]` for none)"
            ));
        }
        Some(Value::Array(sets)) => sets,
        Some(other) => {
            return Err(format!(
                "`{at}.Dimensions` is {}, not an array",
                kind(other)
            ));
        }
        None => return Err(format!("`{at}.Dimensions` is missing")),
    };
    for (j, set) in sets.iter().enumerate() {
        let Value::Array(names) = set else {
            return Err(format!(
                "`{at}.Dimensions[{j}]` is {}, not an array",
                kind(set)
            ));
        };
        if names.len() > MAX_DIMENSIONS {
            return Err(format!(
                "`{at}.Dimensions[{j}]` has {} dimensions; at most {MAX_DIMENSIONS}",
                names.len()
            ));
        }
        for (k, name) in names.iter().enumerate() {
            let Value::String(name) = name else {
                return Err(format!(
                    "`{at}.Dimensions[{j}][{k}]` is {}, not a string",
                    kind(name)
                ));
            };
            check_length(name, MAX_DIMENSION_NAME_CHARS, || {
                format!("{at}.Dimensions[{j}][{k}]")
            })?;
            check_dimension(name, root.get(name))?;
        }
    }

    let metrics = match directive.get("Metrics") {
        Some(Value::Array(metrics)) => metrics,
        Some(other) => return Err(format!("`{at}.Metrics` is {}, not an array", kind(other))),
        None => return Err(format!("`{at}.Metrics` is missing")),
    };
    if metrics.len() > MAX_METRICS {
        return Err(format!(
            "`{at}.Metrics` has {} metrics; at most {MAX_METRICS}",
            metrics.len()
        ));
    }
    let mut values = 0usize;
    for (j, definition) in metrics.iter().enumerate() {
        let n = metric_values(definition, root, || format!("{at}.Metrics[{j}]"))?;
        values = values.saturating_add(n);
    }
    Ok(values)
}

/// `_aws.CloudWatchMetrics[i]`, as a reason names it.
#[derive(Clone, Copy)]
struct Directive(usize);

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "_aws.CloudWatchMetrics[{}]", self.0)
    }
}

/// A dimension's target: a member of the root with a string value.
fn check_dimension(name: &str, target: Option<&Value>) -> Result<(), String> {
    let Some(Value::String(value)) = target else {
        return Err(format!(
            "dimension `{}` is not a string member of the document",
            quote(name)
        ));
    };
    let chars = value.chars().count();
    if chars > MAX_DIMENSION_VALUE_CHARS {
        return Err(format!(
            "dimension `{}` has a value of {chars} characters; at most {MAX_DIMENSION_VALUE_CHARS}",
            quote(name)
        ));
    }
    Ok(())
}

/// Checks one MetricDefinition (at the place `at` names) and counts its target's values.
fn metric_values(
    definition: &Value,
    root: &Map<String, Value>,
    at: impl Fn() -> String,
) -> Result<usize, String> {
    let Value::Object(definition) = definition else {
        return Err(format!("`{}` is {}, not an object", at(), kind(definition)));
    };
    let name = match definition.get("Name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(format!("`{}.Name` is {}, not a string", at(), kind(other))),
        None => return Err(format!("`{}.Name` is missing", at())),
    };
    check_length(name, MAX_METRIC_NAME_CHARS, || format!("{}.Name", at()))?;

    match definition.get("Unit") {
        None => {}
        Some(Value::String(unit)) if Unit::parse(unit).is_some() => {}
        Some(Value::String(unit)) => {
            return Err(format!(
                "unit `{}` of metric `{}` is not a CloudWatch unit",
                quote(unit),
                quote(name)
            ));
        }
        Some(other) => {
            return Err(format!(
                "unit of metric `{}` is {}, not a string",
                quote(name),
                kind(other)
            ));
        }
    }
    match definition.get("StorageResolution") {
        None => {}
        Some(r) if matches!(integer(r), Some(1 | 60)) => {}
        Some(r) => {
            return Err(format!(
                "storage resolution of metric `{}` is {}, not 1 or 60",
                quote(name),
                describe(r)
            ));
        }
    }

    match root.get(name) {
        Some(n @ Value::Number(_)) => accepted(name, n).map(|()| 1),
        Some(Value::Array(values)) => {
            if let Some(other) = values.iter().find(|v| !v.is_number()) {
                return Err(format!(
                    "metric `{}` has an array holding {}, not only numbers",
                    quote(name),
                    kind(other)
                ));
            }
            values.iter().try_for_each(|v| accepted(name, v))?;
            count_values(name, values.len())
        }
        Some(Value::Object(aggregate)) => {
            let n = aggregate_values(name, aggregate)?;
            ["Count", "Sum", "Min", "Max", "Values", "Counts"]
                .iter()
                .filter_map(|k| aggregate.get(*k))
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect(),
                    v => vec![v],
                })
                .try_for_each(|v| accepted(name, v))?;
            Ok(n)
        }
        _ => Err(format!(
            "metric `{}` has no numeric value in the document",
            quote(name)
        )),
    }
}

/// A statistic set (one value) or a histogram (one value for each of its `Values`), as AWS's
/// emitters write them; see the module's notes.
fn aggregate_values(name: &str, aggregate: &Map<String, Value>) -> Result<usize, String> {
    let numbers = |v: Option<&Value>| match v {
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => Some(items.len()),
        _ => None,
    };
    match (aggregate.get("Values"), aggregate.get("Counts")) {
        (None, None) => {
            let statistics = ["Count", "Sum", "Min", "Max"];
            if statistics
                .iter()
                .all(|k| aggregate.get(*k).is_some_and(Value::is_number))
            {
                Ok(1)
            } else {
                Err(format!(
                    "metric `{}` is an object without numeric `Count`, `Sum`, `Min` and `Max`",
                    quote(name)
                ))
            }
        }
        (values, counts) => match (numbers(values), numbers(counts)) {
            (Some(values), Some(counts)) if values == counts => count_values(name, values),
            _ => Err(format!(
                "metric `{}` is an object whose `Values` and `Counts` are not arrays of numbers \
                 of one length",
                quote(name)
            )),
        },
    }
}

/// A number of metric `name` CloudWatch takes (see [`crate::metric::accepted_value`]).
fn accepted(name: &str, value: &Value) -> Result<(), String> {
    match value.as_f64() {
        Some(v) if !crate::metric::accepted_value(v) => Err(format!(
            "metric `{}` has the value {}, outside what CloudWatch takes (2^-260 to 2^360 from 0, or 0)",
            quote(name),
            describe(value)
        )),
        _ => Ok(()),
    }
}

fn count_values(name: &str, n: usize) -> Result<usize, String> {
    if n > MAX_VALUES {
        return Err(format!(
            "metric `{}` has {n} values; at most {MAX_VALUES}",
            quote(name)
        ));
    }
    Ok(n)
}

/// A name the schema bounds to 1..=`max` characters (`at` names the member, without quotes).
fn check_length(s: &str, max: usize, at: impl FnOnce() -> String) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("`{}` is empty", at()));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(format!("`{}` is {chars} characters; at most {max}", at()));
    }
    Ok(())
}

/// `_aws.Timestamp` if it is valid: a whole number of milliseconds, not before the epoch.
fn timestamp(value: &Value) -> Option<i64> {
    integer(value).filter(|ms| *ms >= 0)
}

/// A JSON number with no fraction, as JSON Schema's `integer` takes it (`60.0` is one).
fn integer(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    // 2^63 is exact as an f64, so the range check is too; NaN and infinities fail it.
    const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
    let in_range = (-TWO_TO_63..TWO_TO_63).contains(&f);
    (in_range && f.fract() == 0.0).then_some(f as i64)
}

/// What kind of JSON value this is, for a reason.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number as the document wrote it, anything else by its kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        other => kind(other).to_owned(),
    }
}

/// Text from the document as a reason quotes it: control characters escaped, so that a reason
/// stays on one line, and cut after [`QUOTE_CHARS`] characters.
fn quote(text: &str) -> String {
    let mut quoted = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == QUOTE_CHARS {
            quoted.push('…');
            break;
        }
        if c.is_control() {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example on the specification's page, as it is written there.
    const SPEC_EXAMPLE: &str = r#"{
  "_aws": {
    "Timestamp": 1574109732004,
    "CloudWatchMetrics": [
      {
        "Namespace": "lambda-function-metrics",
        "Dimensions": [["functionVersion"]],
        "Metrics": [
          {
            "Name": "time",
            "Unit": "Milliseconds",
            "StorageResolution": 60
          }
        ]
      }
    ]
  },
  "functionVersion": "$LATEST",
  "time": 100,
  "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee"
}"#;

    /// A small valid document.
    fn base() -> Value {
        json!({
            "_aws": {
                "Timestamp": 1_700_000_000_000_i64,
                "CloudWatchMetrics": [{
                    "Namespace": "MyApp",
                    "Dimensions": [["Service"]],
                    "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}]
                }]
            },
            "Service": "checkout",
            "Latency": 12.5
        })
    }

    /// The JSON pointer of a member of `base()`'s directive.
    fn directive(member: &str) -> String {
        format!("/_aws/CloudWatchMetrics/0{member}")
    }

    /// Sets (or, given None, removes) the member at JSON pointer `pointer`.
    fn edit(doc: &mut Value, pointer: &str, value: Option<Value>) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match (doc.pointer_mut(parent).unwrap(), value) {
            (Value::Object(members), Some(value)) => {
                members.insert(key.to_owned(), value);
            }
            (Value::Object(members), None) => {
                members.remove(key);
            }
            (Value::Array(items), Some(value)) => items[key.parse::<usize>().unwrap()] = value,
            _ => panic!("cannot edit {pointer}"),
        }
    }

    fn validity(doc: &Value) -> Result<usize, String> {
        inspect(&doc.to_string()).unwrap().validity
    }

    /// The validity of `base()` with the member at `pointer` set to `value` (or removed).
    fn validity_with(pointer: &str, value: Option<Value>) -> Result<usize, String> {
        let mut doc = base();
        edit(&mut doc, pointer, value);
        validity(&doc)
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    /// One change to `base()` for each rule, and the reason it gives.
    fn broken_rules() -> Vec<(String, Option<Value>, &'static str)> {
        let aws = |m: &str| format!("/_aws{m}");
        let d = directive;
        vec![
            ("/_aws".into(), None, "`_aws` is missing"),
            (
                "/_aws".into(),
                Some(json!("x")),
                "`_aws` is a string, not an object",
            ),
            (aws("/Timestamp"), None, "`_aws.Timestamp` is missing"),
            (
                aws("/Timestamp"),
                Some(json!("1700000000000")),
                "`_aws.Timestamp` is a string, not a whole number of milliseconds since the epoch",
            ),
            (
                aws("/Timestamp"),
                Some(json!(-1)),
                "`_aws.Timestamp` is -1, not a whole number of milliseconds since the epoch",
            ),
            (
                aws("/Timestamp"),
                Some(json!(1.5)),
                "`_aws.Timestamp` is 1.5, not a whole number of milliseconds since the epoch",
            ),
            (
                aws("/Timestamp"),
                Some(json!(u64::MAX)),
                "`_aws.Timestamp` is 18446744073709551615, not a whole number of milliseconds \
                 since the epoch",
            ),
            (
                aws("/CloudWatchMetrics"),
                None,
                "`_aws.CloudWatchMetrics` is missing",
            ),
            (
                aws("/CloudWatchMetrics"),
                Some(json!({})),
                "`_aws.CloudWatchMetrics` is an object, not an array",
            ),
            (
                aws("/CloudWatchMetrics"),
                Some(json!([null])),
                "`_aws.CloudWatchMetrics[0]` is null, not an object",
            ),
            (
                d("/Namespace"),
                None,
                "`_aws.CloudWatchMetrics[0].Namespace` is missing",
            ),
            (
                d("/Namespace"),
                Some(json!(7)),
                "`_aws.CloudWatchMetrics[0].Namespace` is a number, not a string",
            ),
            (
                d("/Namespace"),
                Some(json!("")),
                "`_aws.CloudWatchMetrics[0].Namespace` is empty",
            ),
            (
                d("/Namespace"),
                Some(json!("é".repeat(1025))),
                "`_aws.CloudWatchMetrics[0].Namespace` is 1025 characters; at most 1024",
            ),
            (
                d("/Dimensions"),
                None,
                "`_aws.CloudWatchMetrics[0].Dimensions` is missing",
            ),
            (
                d("/Dimensions"),
                Some(json!({})),
                "`_aws.CloudWatchMetrics[0].Dimensions` is an object, not an array",
            ),
            (
                d("/Dimensions"),
                Some(json!([])),
                "`_aws.CloudWatchMetrics[0].Dimensions` is empty; it needs at least one \
                 dimension set (`[[]]` for none)",
            ),
            (
                d("/Dimensions"),
                Some(json!([["Service"], "Service"])),
                "`_aws.CloudWatchMetrics[0].Dimensions[1]` is a string, not an array",
            ),
            (
                d("/Dimensions"),
                Some(json!([["Service"], names(31)])),
                "`_aws.CloudWatchMetrics[0].Dimensions[1]` has 31 dimensions; at most 30",
            ),
            (
                d("/Dimensions"),
                Some(json!([["Service", 5]])),
                "`_aws.CloudWatchMetrics[0].Dimensions[0][1]` is a number, not a string",
            ),
            (
                d("/Dimensions"),
                Some(json!([[""]])),
                "`_aws.CloudWatchMetrics[0].Dimensions[0][0]` is empty",
            ),
            (
                d("/Dimensions"),
                Some(json!([["a".repeat(251)]])),
                "`_aws.CloudWatchMetrics[0].Dimensions[0][0]` is 251 characters; at most 250",
            ),
            (
                d("/Dimensions"),
                Some(json!([["Region"]])),
                "dimension `Region` is not a string member of the document",
            ),
            (
                "/Service".into(),
                Some(json!(3)),
                "dimension `Service` is not a string member of the document",
            ),
            (
                "/Service".into(),
                Some(json!(["checkout"])),
                "dimension `Service` is not a string member of the document",
            ),
            (
                "/Service".into(),
                Some(json!("s".repeat(1025))),
                "dimension `Service` has a value of 1025 characters; at most 1024",
            ),
            (
                d("/Metrics"),
                None,
                "`_aws.CloudWatchMetrics[0].Metrics` is missing",
            ),
            (
                d("/Metrics"),
                Some(json!({"Name": "Latency"})),
                "`_aws.CloudWatchMetrics[0].Metrics` is an object, not an array",
            ),
            (
                d("/Metrics"),
                Some(json!(vec![json!({"Name": "Latency"}); 101])),
                "`_aws.CloudWatchMetrics[0].Metrics` has 101 metrics; at most 100",
            ),
            (
                d("/Metrics"),
                Some(json!(["Latency"])),
                "`_aws.CloudWatchMetrics[0].Metrics[0]` is a string, not an object",
            ),
            (
                d("/Metrics/0/Name"),
                None,
                "`_aws.CloudWatchMetrics[0].Metrics[0].Name` is missing",
            ),
            (
                d("/Metrics"),
                Some(json!([{"Name": "Latency"}, {"Name": ["Latency"]}])),
                "`_aws.CloudWatchMetrics[0].Metrics[1].Name` is an array, not a string",
            ),
            (
                d("/Metrics/0/Name"),
                Some(json!("")),
                "`_aws.CloudWatchMetrics[0].Metrics[0].Name` is empty",
            ),
            (
                d("/Metrics/0/Name"),
                Some(json!("n".repeat(1025))),
                "`_aws.CloudWatchMetrics[0].Metrics[0].Name` is 1025 characters; at most 1024",
            ),
            (
                d("/Metrics/0/Unit"),
                Some(json!("Secs")),
                "unit `Secs` of metric `Latency` is not a CloudWatch unit",
            ),
            (
                d("/Metrics/0/Unit"),
                Some(json!("milliseconds")),
                "unit `milliseconds` of metric `Latency` is not a CloudWatch unit",
            ),
            (
                d("/Metrics/0/Unit"),
                Some(json!(null)),
                "unit of metric `Latency` is null, not a string",
            ),
            (
                d("/Metrics/0/StorageResolution"),
                Some(json!(30)),
                "storage resolution of metric `Latency` is 30, not 1 or 60",
            ),
            (
                d("/Metrics/0/StorageResolution"),
                Some(json!("60")),
                "storage resolution of metric `Latency` is a string, not 1 or 60",
            ),
            (
                "/Latency".into(),
                None,
                "metric `Latency` has no numeric value in the document",
            ),
            (
                "/Latency".into(),
                Some(json!("12.5")),
                "metric `Latency` has no numeric value in the document",
            ),
            (
                "/Latency".into(),
                Some(json!(null)),
                "metric `Latency` has no numeric value in the document",
            ),
            (
                "/Latency".into(),
                Some(json!([1, "2"])),
                "metric `Latency` has an array holding a string, not only numbers",
            ),
            (
                "/Latency".into(),
                Some(json!(vec![1.5; 101])),
                "metric `Latency` has 101 values; at most 100",
            ),
            (
                "/Latency".into(),
                Some(json!(1e200)),
                "metric `Latency` has the value 1e+200, outside what CloudWatch takes (2^-260 to 2^360 from 0, or 0)",
            ),
            (
                "/Latency".into(),
                Some(json!([1, -1e-200])),
                "metric `Latency` has the value -1e-200, outside what CloudWatch takes (2^-260 to 2^360 from 0, or 0)",
            ),
            (
                "/Latency".into(),
                Some(json!({"Count": 2, "Sum": 1e300, "Min": 1, "Max": 2})),
                "metric `Latency` has the value 1e+300, outside what CloudWatch takes (2^-260 to 2^360 from 0, or 0)",
            ),
        ]
    }

    #[test]
    fn each_broken_rule_is_named_in_the_reason() {
        for (pointer, value, reason) in broken_rules() {
            assert_eq!(
                validity_with(&pointer, value),
                Err(reason.to_owned()),
                "{pointer}"
            );
        }
    }

    #[test]
    fn the_specifications_example_is_valid() {
        assert_eq!(
            inspect(SPEC_EXAMPLE),
            Ok(Inspected {
                log_group: None,
                log_stream: None,
                timestamp_ms: Some(1_574_109_732_004),
                validity: Ok(1),
            })
        );
    }

    #[test]
    fn a_document_from_aws_embedded_metrics_names_its_log_group_in_aws() {
        // As aws-embedded-metrics-java's agent sink writes one: the log group and stream in
        // the metadata, its default dimensions, a metric with several values.
        let line = r#"{"_aws":{"Timestamp":1599079576076,"LogGroupName":"my-service-metrics","LogStreamName":"host-1","CloudWatchMetrics":[{"Namespace":"aws-embedded-metrics","Metrics":[{"Name":"ProcessingLatency","Unit":"Milliseconds"},{"Name":"Errors","Unit":"Count","StorageResolution":1}],"Dimensions":[["LogGroup","ServiceName","ServiceType"]]}]},"LogGroup":"my-service-metrics","ServiceName":"my-service","ServiceType":"AWS::EC2::Instance","ProcessingLatency":[101.0,99.5,120.25],"Errors":0,"RequestId":"422b1569-16f6-4a03-b8f0-fe3fd9b100f8"}"#;
        let inspected = inspect(line).unwrap();
        assert_eq!(inspected.log_group.as_deref(), Some("my-service-metrics"));
        assert_eq!(inspected.log_stream.as_deref(), Some("host-1"));
        assert_eq!(inspected.timestamp_ms, Some(1_599_079_576_076));
        assert_eq!(inspected.validity, Ok(4));
    }

    #[test]
    fn the_older_top_level_log_group_name_is_read() {
        // As the node and python aws-embedded-metrics agent sinks once wrote it.
        let mut doc = base();
        doc["log_group_name"] = json!("legacy-group");
        doc["log_stream_name"] = json!("legacy-stream");
        let inspected = inspect(&doc.to_string()).unwrap();
        assert_eq!(inspected.log_group.as_deref(), Some("legacy-group"));
        assert_eq!(inspected.log_stream.as_deref(), Some("legacy-stream"));
        assert_eq!(inspected.validity, Ok(1));
    }

    #[test]
    fn the_names_in_aws_win_and_empty_or_odd_ones_count_as_absent() {
        let mut doc = base();
        doc["_aws"]["LogGroupName"] = json!("new-group");
        doc["log_group_name"] = json!("legacy-group");
        doc["_aws"]["LogStreamName"] = json!("");
        doc["log_stream_name"] = json!("legacy-stream");
        let inspected = inspect(&doc.to_string()).unwrap();
        assert_eq!(inspected.log_group.as_deref(), Some("new-group"));
        assert_eq!(inspected.log_stream.as_deref(), Some("legacy-stream"));

        let inspected = inspect(r#"{"_aws":{"LogGroupName":7},"log_stream_name":""}"#).unwrap();
        assert_eq!(inspected.log_group, None);
        assert_eq!(inspected.log_stream, None);
    }

    #[test]
    fn names_and_time_are_read_from_a_document_that_is_not_valid() {
        let inspected = inspect(r#"{"_aws":{"Timestamp":5,"LogGroupName":"g"},"x":1}"#).unwrap();
        assert_eq!(inspected.log_group.as_deref(), Some("g"));
        assert_eq!(inspected.timestamp_ms, Some(5));
        assert_eq!(
            inspected.validity,
            Err("`_aws.CloudWatchMetrics` is missing".into())
        );
        // A plain JSON log line is an object too: inspected, and not EMF.
        let inspected = inspect(r#"{"level":"info","msg":"hello"}"#).unwrap();
        assert_eq!(inspected.validity, Err("`_aws` is missing".into()));
        // A negative time is no time.
        let inspected = inspect(r#"{"_aws":{"Timestamp":-5}}"#).unwrap();
        assert_eq!(inspected.timestamp_ms, None);
    }

    #[test]
    fn json_that_is_not_an_object_is_not_a_document() {
        for (line, reason) in [
            ("[]", "the line is an array, not a JSON object"),
            ("[{\"_aws\":{}}]", "the line is an array, not a JSON object"),
            ("12", "the line is a number, not a JSON object"),
            ("\"{}\"", "the line is a string, not a JSON object"),
            ("null", "the line is null, not a JSON object"),
            ("true", "the line is a boolean, not a JSON object"),
        ] {
            assert_eq!(inspect(line), Err(reason.to_owned()), "{line}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_not_a_document() {
        for line in [
            "",
            "   ",
            "hello",
            "{",
            "{'_aws': {}}",
            r#"{"a":1} {"b":2}"#,
            r#"{"a":1}x"#,
            r#"START RequestId: 1 {"_aws":{}}"#,
            r#"{"a":NaN}"#,
            r#"{"a":1e400}"#,
            "{\"a\":\"\u{0}\"}",
        ] {
            let reason = inspect(line).unwrap_err();
            assert!(
                reason.starts_with("the line is not JSON: "),
                "{line}: {reason}"
            );
        }
    }

    #[test]
    fn whitespace_around_the_document_is_allowed() {
        let line = format!("  {}\r\n", base());
        assert_eq!(inspect(&line).unwrap().validity, Ok(1));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        for line in [
            "[".repeat(1_000_000),
            "{\"a\":".repeat(200_000),
            format!("{}1{}", "[".repeat(128), "]".repeat(128)),
        ] {
            let reason = inspect(&line).unwrap_err();
            assert!(reason.contains("recursion limit exceeded"), "{reason}");
        }
        // Inside an otherwise valid document too. The root and 126 levels below it are read.
        let mut doc = base().to_string();
        doc.pop();
        let nested = |levels: usize| {
            format!(
                "{doc},\"deep\":{}{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        assert_eq!(inspect(&nested(126)).unwrap().validity, Ok(1));
        assert!(inspect(&nested(127))
            .unwrap_err()
            .contains("recursion limit exceeded"));
    }

    /// `base()` with a log group, padded with a string member to exactly `bytes` long.
    fn padded(bytes: usize) -> String {
        let mut doc = base();
        doc["_aws"]["LogGroupName"] = json!("big");
        doc["padding"] = json!("");
        let short = doc.to_string().len();
        doc["padding"] = json!("x".repeat(bytes - short));
        let line = doc.to_string();
        assert_eq!(line.len(), bytes);
        line
    }

    #[test]
    fn a_document_of_a_megabyte_is_read_and_held_to_the_event_limit() {
        let largest = padded(MAX_DOCUMENT_BYTES);
        assert_eq!(inspect(&largest).unwrap().validity, Ok(1));

        for bytes in [MAX_DOCUMENT_BYTES + 1, 1_048_576] {
            let inspected = inspect(&padded(bytes)).unwrap();
            assert_eq!(inspected.log_group.as_deref(), Some("big"));
            assert_eq!(
                inspected.validity,
                Err(format!("the document is {bytes} bytes; at most 1048550"))
            );
        }

        // As many values as a document can define: a hundred metrics of a hundred numbers.
        let mut doc = base();
        let metrics: Vec<Value> = (0..100)
            .map(|i| json!({"Name": format!("m{i}"), "Unit": "Bytes"}))
            .collect();
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(metrics);
        for i in 0..100 {
            doc[format!("m{i}")] = json!(vec![123_456_789.123_456_78_f64; 100]);
        }
        assert_eq!(validity(&doc), Ok(10_000));
    }

    #[test]
    fn the_metric_values_of_every_directive_are_counted() {
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[
            {"Namespace":"A","Dimensions":[[]],"Metrics":[{"Name":"one"},{"Name":"three"}]},
            {"Namespace":"B","Dimensions":[["d"],["d","e"],[]],"Metrics":[{"Name":"one"},{"Name":"none"}]},
            {"Namespace":"C","Dimensions":[[]],"Metrics":[]}
        ]},"d":"x","e":"y","one":1,"three":[1,2,3.5],"none":[]}"#;
        assert_eq!(inspect(line).unwrap().validity, Ok(5));
    }

    #[test]
    fn an_empty_list_of_directives_is_valid_and_defines_nothing() {
        assert_eq!(
            validity_with("/_aws/CloudWatchMetrics", Some(json!([]))),
            Ok(0)
        );
    }

    #[test]
    fn a_dimension_set_may_be_empty_or_hold_thirty_names() {
        assert_eq!(
            validity_with(&directive("/Dimensions"), Some(json!([[]]))),
            Ok(1)
        );
        let mut doc = base();
        for name in names(30) {
            doc[name] = json!("v");
        }
        edit(
            &mut doc,
            &directive("/Dimensions"),
            Some(json!([names(30)])),
        );
        assert_eq!(validity(&doc), Ok(1));
    }

    #[test]
    fn members_the_specification_does_not_define_are_ignored() {
        let mut doc = base();
        edit(&mut doc, "/_aws/Extra", Some(json!({"nested": [1, 2]})));
        edit(&mut doc, &directive("/Extra"), Some(json!(null)));
        edit(&mut doc, &directive("/Metrics/0/Extra"), Some(json!(true)));
        assert_eq!(validity(&doc), Ok(1));
    }

    #[test]
    fn every_cloudwatch_unit_and_none_at_all_is_accepted() {
        for unit in [
            "Seconds",
            "Microseconds",
            "Milliseconds",
            "Bytes",
            "Kilobytes",
            "Megabytes",
            "Gigabytes",
            "Terabytes",
            "Bits",
            "Kilobits",
            "Megabits",
            "Gigabits",
            "Terabits",
            "Percent",
            "Count",
            "Bytes/Second",
            "Kilobytes/Second",
            "Megabytes/Second",
            "Gigabytes/Second",
            "Terabytes/Second",
            "Bits/Second",
            "Kilobits/Second",
            "Megabits/Second",
            "Gigabits/Second",
            "Terabits/Second",
            "Count/Second",
            "None",
        ] {
            let unit_of_latency = directive("/Metrics/0/Unit");
            assert_eq!(validity_with(&unit_of_latency, Some(json!(unit))), Ok(1));
        }
        assert_eq!(validity_with(&directive("/Metrics/0/Unit"), None), Ok(1));
    }

    #[test]
    fn both_storage_resolutions_are_accepted() {
        for resolution in [json!(1), json!(60), json!(1.0), json!(60.0)] {
            let resolution_of_latency = directive("/Metrics/0/StorageResolution");
            assert_eq!(
                validity_with(&resolution_of_latency, Some(resolution)),
                Ok(1)
            );
        }
    }

    #[test]
    fn a_timestamp_written_with_a_fraction_of_zero_is_whole() {
        let mut doc = base();
        doc["_aws"]["Timestamp"] = json!(1.7e12);
        let inspected = inspect(&doc.to_string()).unwrap();
        assert_eq!(inspected.timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(inspected.validity, Ok(1));
        doc["_aws"]["Timestamp"] = json!(0);
        assert_eq!(validity(&doc), Ok(1));
    }

    #[test]
    fn statistic_sets_and_histograms_as_aws_emitters_write_them_are_counted() {
        let mut doc = base();
        doc["Latency"] = json!({"Max": 9.0, "Min": 1.0, "Count": 4, "Sum": 20.0});
        assert_eq!(validity(&doc), Ok(1));
        doc["Latency"] = json!({
            "Values": [0.39, 0.48, 1.0], "Counts": [1, 1, 3],
            "Count": 5, "Sum": 3.87, "Max": 1.0, "Min": 0.39
        });
        assert_eq!(validity(&doc), Ok(3));
        doc["Latency"] = json!({"Values": vec![1; 101], "Counts": vec![1; 101]});
        assert_eq!(
            validity(&doc),
            Err("metric `Latency` has 101 values; at most 100".into())
        );
        for odd in [
            json!({}),
            json!({"Max": 9.0, "Min": 1.0, "Count": 4}),
            json!({"Max": 9.0, "Min": 1.0, "Count": "4", "Sum": 20.0}),
        ] {
            doc["Latency"] = odd;
            assert_eq!(
                validity(&doc),
                Err(
                    "metric `Latency` is an object without numeric `Count`, `Sum`, `Min` and \
                     `Max`"
                        .into()
                )
            );
        }
        for odd in [
            json!({"Values": [1, 2], "Counts": [1]}),
            json!({"Values": [1, 2]}),
            json!({"Counts": [1, 2]}),
            json!({"Values": [1, "2"], "Counts": [1, 1]}),
            json!({"Values": 1, "Counts": 1}),
        ] {
            doc["Latency"] = odd;
            let reason = validity(&doc).unwrap_err();
            assert!(reason.contains("`Values` and `Counts`"), "{doc}: {reason}");
        }
    }

    #[test]
    fn repeated_metric_names_are_each_counted() {
        let twice = json!([{"Name": "Latency"}, {"Name": "Latency", "Unit": "Seconds"}]);
        assert_eq!(validity_with(&directive("/Metrics"), Some(twice)), Ok(2));
    }

    #[test]
    fn a_dotted_name_refers_to_a_top_level_member_never_a_nested_one() {
        let mut doc = base();
        edit(&mut doc, &directive("/Metrics/0/Name"), Some(json!("A.a")));
        doc["A"] = json!({"a": 1});
        assert_eq!(
            validity(&doc),
            Err("metric `A.a` has no numeric value in the document".into())
        );
        doc["A.a"] = json!(1);
        assert_eq!(validity(&doc), Ok(1));
    }

    #[test]
    fn the_first_directive_at_fault_is_named() {
        let mut doc = base();
        let good = doc["_aws"]["CloudWatchMetrics"][0].clone();
        let mut bad = good.clone();
        bad["Namespace"] = json!("");
        doc["_aws"]["CloudWatchMetrics"] = json!([good, bad]);
        assert_eq!(
            validity(&doc),
            Err("`_aws.CloudWatchMetrics[1].Namespace` is empty".into())
        );
    }

    #[test]
    fn reasons_quote_names_on_one_line_and_briefly() {
        let name = directive("/Metrics/0/Name");
        assert_eq!(
            validity_with(&name, Some(json!("a\nb`c"))),
            Err("metric `a\\nb`c` has no numeric value in the document".into())
        );
        assert_eq!(
            validity_with(&name, Some(json!("x".repeat(1000)))),
            Err(format!(
                "metric `{}…` has no numeric value in the document",
                "x".repeat(100)
            ))
        );
    }

    #[test]
    fn no_cut_or_changed_document_makes_inspection_panic() {
        // Every prefix of documents that reach each rule, and the specification's example with
        // each character replaced by one of a few that matter to JSON: the answers vary, a
        // panic never comes.
        let mut lines = vec![SPEC_EXAMPLE.to_owned(), base().to_string()];
        for (pointer, value, _) in broken_rules() {
            let mut doc = base();
            edit(&mut doc, &pointer, value);
            lines.push(doc.to_string());
        }
        for line in &lines {
            for end in (0..=line.len()).filter(|&i| line.is_char_boundary(i)) {
                let _ = inspect(&line[..end]);
            }
        }
        for (i, original) in SPEC_EXAMPLE.char_indices() {
            for c in "0-.\"[]{},:e \u{1F600}".chars() {
                let mut changed = SPEC_EXAMPLE.to_owned();
                changed.replace_range(i..i + original.len_utf8(), c.encode_utf8(&mut [0; 4]));
                let _ = inspect(&changed);
            }
        }
    }
}
