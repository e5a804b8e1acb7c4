//! StatsD and DogStatsD lines, read into [`Metric`]s that borrow from the datagram. The
//! listener hands each datagram (or each chunk of a TCP stream) to [`lines`] and each line to
//! [`parse_line`]; what a metric then means (scaling a count by its sample rate, keeping a
//! gauge's level, counting a set's members) is the aggregator's business. Parsing is kept
//! apart, without I/O, so that every rule below is a unit test, and it allocates nothing per
//! line but a line's tags, so one core keeps up with a busy host's clients.
//!
//! A line is `name:value|type`, then any number of sections, each after a `|`:
//!
//! - The line is trimmed of surrounding whitespace (as Telegraf and the CloudWatch agent do),
//!   and so is the name: everything before the first `:`. A name must not be empty or hold a
//!   `|`; other characters are kept as sent, for the caller to check against CloudWatch's
//!   rules.
//! - The type is `c` (counter), `g` (gauge), `ms` (timer), `h` (histogram), `d` (DogStatsD's
//!   distribution) or `s` (set); any other is malformed.
//! - A value is a finite number. On a gauge, a leading `+` or `-` makes it a change to the
//!   current level ([`Value::Delta`]): StatsD cannot set a gauge to a negative number
//!   directly, so clients send `name:0|g` and then `name:-5|g`. On the other kinds a sign is
//!   only the number's sign: a negative count takes away. (Telegraf and the CloudWatch agent
//!   refuse a signed timing or histogram value; here a value is a number, and the caller may
//!   refuse what it cannot use.) A set's value is its member: any text but the empty one.
//! - `@rate` is a sample rate: the client sent one value in `1 / rate`. It must be a number in
//!   (0, 1]. Telegraf logs a rate it cannot read and goes on without one; here the line is
//!   malformed, as its values' meaning is unknown. Datadog allows a rate of 0, which would
//!   scale by infinity, so it is refused too. Rates apply to counters, timers, histograms and
//!   distributions, as DogStatsD documents; on gauges and sets a rate is checked, then
//!   dropped (the metric says 1.0).
//! - `#k:v,k2:v2` are DogStatsD tags. Each is split at its first `:` (values may hold `:`); a
//!   tag without one has the value "" (the CloudWatch agent makes it `<empty>`, as CloudWatch
//!   refuses an empty dimension value; the caller decides); empty items are skipped; an empty
//!   key is malformed (the CloudWatch agent drops that one tag silently). Tags belong to the
//!   line: each of its metrics gets all of them, in order, wherever they stand in it (as
//!   Telegraf and the CloudWatch agent do). Repeated keys are kept; the agent keeps the last.
//! - DogStatsD's container id (`c:…`), timestamp (`T…`) and any section not known here are
//!   skipped, not malformed, so that newer clients are still heard.
//!
//! A line may hold several values for one name. Telegraf's (and Etsy's) style gives each its
//! own type and rate, `name:1|c:2|ms|@0.5`; DogStatsD 1.1 packs values that share the type
//! and rate after them, `name:1:2:3|h|@0.5`; the two may be mixed. A `:` after a type, rate or
//! timestamp begins the next value; tags, container ids and unknown sections may themselves
//! hold `:`, so they run to the next `|` and a line has no further values after one. A set is
//! not packed (DogStatsD's rule, as its members may hold `:`): `users:a:b|s` is the one
//! member `a:b`.
//!
//! DogStatsD events (`_e{…`) and service checks (`_sc|…`) are not metrics: they parse to
//! nothing, and the caller may count them.

use std::fmt;

/// How much of the offending text a [`Malformed`] quotes: enough to find the client by,
/// without copying a whole datagram into a log line.
const QUOTE_MAX: usize = 64;

/// What kind of StatsD metric a line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `c`: a count of events, added up.
    Counter,
    /// `g`: a level, set or changed.
    Gauge,
    /// `ms`: how long something took, in milliseconds.
    Timer,
    /// `h`: a value whose spread is wanted.
    Histogram,
    /// `d`: DogStatsD's distribution, a histogram across all hosts.
    Distribution,
    /// `s`: a member; the distinct members are counted.
    Set,
}

impl Kind {
    /// The kind a type section names.
    fn from_symbol(symbol: &str) -> Option<Kind> {
        match symbol {
            "c" => Some(Kind::Counter),
            "g" => Some(Kind::Gauge),
            "ms" => Some(Kind::Timer),
            "h" => Some(Kind::Histogram),
            "d" => Some(Kind::Distribution),
            "s" => Some(Kind::Set),
            _ => None,
        }
    }

    /// Whether a sample rate scales this kind's values (DogStatsD applies rates to counts,
    /// timers, histograms and distributions only).
    fn is_sampled(self) -> bool {
        !matches!(self, Kind::Gauge | Kind::Set)
    }
}

/// One value of a metric, as the line gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A number: a counter's increment, a gauge's new value, a timing or histogram value.
    Number(f64),
    /// A gauge's `+N` / `-N`: a change to its current value.
    Delta(f64),
    /// A set's member (any text).
    Member(&'a str),
}

/// One value for one metric, borrowing its text from the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    /// The name before the first `:`, trimmed of surrounding whitespace; never empty.
    pub name: &'a str,
    /// What the type section said.
    pub kind: Kind,
    /// The value, a [`Value::Delta`] only for gauges and a [`Value::Member`] only for sets.
    pub value: Value<'a>,
    /// `|@0.1`: the client sent one in ten; 1.0 when absent, and for gauges and sets. Always
    /// in (0, 1].
    pub sample_rate: f64,
    /// DogStatsD `|#k:v,k2:v2` tags in their order; a tag with no `:` has the value "" (the
    /// caller decides what that becomes).
    pub tags: Vec<(&'a str, &'a str)>,
}

/// Why a line was not understood: short, lower-case, e.g. "no `|` before the type",
/// "unknown type `x`", "sample rate `2` is not in (0, 1]", "value `abc` is not a number".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// Parses one line (no newline in it), appending its metrics to `out`: what `out` already
/// holds is kept, so one `Vec` can gather a whole datagram and be cleared by the caller.
/// A line may hold several values for one name (`name:1|c:2|ms`, `name:1:2:3|h`), each a
/// [`Metric`]. Returns the reason a line was not understood; then nothing of that line is
/// appended. A blank line, a DogStatsD event or a service check appends nothing and is Ok.
pub fn parse_line<'a>(line: &'a str, out: &mut Vec<Metric<'a>>) -> Result<(), Malformed> {
    let before = out.len();
    let read = read_line(line, out);
    if read.is_err() {
        out.truncate(before);
    }
    read
}

/// Splits a datagram (or a TCP stream's chunk) into lines on `\n`; a trailing `\r` is
/// trimmed and empty lines are skipped.
pub fn lines(datagram: &str) -> impl Iterator<Item = &str> {
    datagram
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// [`parse_line`] without the clean-up of a malformed line's first metrics.
fn read_line<'a>(line: &'a str, out: &mut Vec<Metric<'a>>) -> Result<(), Malformed> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("_e{") || line.starts_with("_sc|") {
        return Ok(());
    }
    let Some((name, rest)) = line.split_once(':') else {
        return Err(Malformed("no `:` after the name".to_owned()));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(Malformed("empty name".to_owned()));
    }
    if name.contains('|') {
        return Err(Malformed(format!("name `{}` holds a `|`", quote(name))));
    }

    let first = out.len();
    let mut tags = Vec::new();
    // Every index below is that of an ASCII byte (or the end), so slicing `rest` with it
    // stays on a character boundary.
    let b = rest.as_bytes();
    let mut pos = 0;
    // Where DogStatsD-packed values began, while their type is still to come.
    let mut packed: Option<usize> = None;
    loop {
        let end = scan(b, pos, colon_or_pipe);
        match b.get(end) {
            None => return Err(Malformed("no `|` before the type".to_owned())),
            Some(b':') => {
                packed.get_or_insert(pos);
                pos = end + 1;
                continue;
            }
            Some(_) => {}
        }
        let values = &rest[packed.take().unwrap_or(pos)..end];

        let type_start = end + 1;
        pos = scan(b, type_start, colon_or_pipe);
        let symbol = &rest[type_start..pos];
        let kind = match Kind::from_symbol(symbol) {
            Some(kind) => kind,
            None if symbol.is_empty() => {
                return Err(Malformed("no type after the `|`".to_owned()));
            }
            None => return Err(Malformed(format!("unknown type `{}`", quote(symbol)))),
        };

        let mut sample_rate = 1.0;
        while b.get(pos) == Some(&b'|') {
            let start = pos + 1;
            match b.get(start) {
                Some(b'@') => {
                    pos = scan(b, start, colon_or_pipe);
                    sample_rate = read_sample_rate(&rest[start + 1..pos])?;
                }
                Some(b'T') => pos = scan(b, start, colon_or_pipe),
                Some(b'#') => {
                    pos = scan(b, start, pipe);
                    read_tags(&rest[start + 1..pos], &mut tags)?;
                }
                // A container id (`c:…`), a section of a newer protocol, or an empty one.
                _ => pos = scan(b, start, pipe),
            }
        }
        push_values(name, kind, values, sample_rate, out)?;

        // Here `pos` is at the end or at a `:` that begins the next value.
        if pos >= b.len() {
            break;
        }
        pos += 1;
    }

    if !tags.is_empty() {
        if let Some((last, others)) = out[first..].split_last_mut() {
            for metric in others {
                metric.tags.clone_from(&tags);
            }
            last.tags = tags;
        }
    }
    Ok(())
}

/// Appends one metric for each value of `values`: the text before a type, packed values
/// still separated by `:`.
fn push_values<'a>(
    name: &'a str,
    kind: Kind,
    values: &'a str,
    sample_rate: f64,
    out: &mut Vec<Metric<'a>>,
) -> Result<(), Malformed> {
    let sample_rate = if kind.is_sampled() { sample_rate } else { 1.0 };
    let metric = |value| Metric {
        name,
        kind,
        value,
        sample_rate,
        tags: Vec::new(),
    };
    if kind == Kind::Set {
        if values.is_empty() {
            return Err(Malformed("empty value".to_owned()));
        }
        out.push(metric(Value::Member(values)));
        return Ok(());
    }
    for text in values.split(':') {
        let number = read_number(text)?;
        let value = if kind == Kind::Gauge && text.starts_with(['+', '-']) {
            Value::Delta(number)
        } else {
            Value::Number(number)
        };
        out.push(metric(value));
    }
    Ok(())
}

/// A value's number: finite, with an optional sign. Plain integers, by far the most common
/// values, are read without the general float parser.
fn read_number(text: &str) -> Result<f64, Malformed> {
    if text.is_empty() {
        return Err(Malformed("empty value".to_owned()));
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    // Up to 15 digits are below 2^53, so the float is exact and the sum cannot overflow.
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|c| c.is_ascii_digit()) {
        let magnitude = digits
            .bytes()
            .fold(0u64, |n, c| n * 10 + u64::from(c - b'0')) as f64;
        return Ok(if text.starts_with('-') {
            -magnitude
        } else {
            magnitude
        });
    }
    match text.parse::<f64>() {
        Ok(number) if crate::metric::accepted_value(number) => Ok(number),
        Ok(number) if number.is_finite() => Err(Malformed(format!(
            "value `{}` is outside what CloudWatch takes (2^-260 to 2^360 from 0, or 0)",
            quote(text)
        ))),
        Ok(_) => Err(Malformed(format!("value `{}` is not finite", quote(text)))),
        Err(_) => Err(Malformed(format!(
            "value `{}` is not a number",
            quote(text)
        ))),
    }
}

/// The text after `@`: a number in (0, 1].
fn read_sample_rate(text: &str) -> Result<f64, Malformed> {
    let Ok(rate) = text.parse::<f64>() else {
        return Err(Malformed(format!(
            "sample rate `{}` is not a number",
            quote(text)
        )));
    };
    // Written so that NaN fails too.
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(Malformed(format!(
            "sample rate `{}` is not in (0, 1]",
            quote(text)
        )))
    }
}

/// The text after `#`: comma-separated tags, each split at its first `:`.
fn read_tags<'a>(text: &'a str, tags: &mut Vec<(&'a str, &'a str)>) -> Result<(), Malformed> {
    tags.reserve(text.bytes().filter(|&c| c == b',').count() + 1);
    for item in text.split(',') {
        if item.is_empty() {
            continue;
        }
        let (key, value) = item.split_once(':').unwrap_or((item, ""));
        if key.is_empty() {
            return Err(Malformed(format!("tag `{}` has an empty key", quote(item))));
        }
        tags.push((key, value));
    }
    Ok(())
}

/// The index of the first byte from `from` on that `stop` accepts, or the length.
fn scan(bytes: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .and_then(|tail| tail.iter().position(|&c| stop(c)))
        .map_or(bytes.len(), |at| from + at)
}

fn colon_or_pipe(c: u8) -> bool {
    c == b':' || c == b'|'
}

fn pipe(c: u8) -> bool {
    c == b'|'
}

/// Input text for a [`Malformed`]: cut at [`QUOTE_MAX`] bytes (on a character boundary),
/// marked with `…` when cut.
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_MAX {
        return text.to_owned();
    }
    let mut end = QUOTE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics of one line, or why it is malformed.
    fn parse(line: &str) -> Result<Vec<Metric<'_>>, Malformed> {
        let mut out = Vec::new();
        parse_line(line, &mut out).map(|()| out)
    }

    fn one(line: &str) -> Metric<'_> {
        let mut metrics = parse(line).unwrap();
        assert_eq!(metrics.len(), 1, "{line}: {metrics:?}");
        metrics.remove(0)
    }

    fn reason(line: &str) -> String {
        parse(line).unwrap_err().0
    }

    #[test]
    fn a_counter_is_read() {
        assert_eq!(
            one("page.views:1|c"),
            Metric {
                name: "page.views",
                kind: Kind::Counter,
                value: Value::Number(1.0),
                sample_rate: 1.0,
                tags: vec![],
            }
        );
    }

    #[test]
    fn a_counter_with_a_sample_rate_carries_the_rate() {
        let m = one("page.views:3|c|@0.1");
        assert_eq!(m.value, Value::Number(3.0));
        assert_eq!(m.sample_rate, 0.1);
    }

    #[test]
    fn a_signed_counter_is_a_number_not_a_delta() {
        assert_eq!(one("jobs:-2|c").value, Value::Number(-2.0));
        assert_eq!(one("jobs:+2|c").value, Value::Number(2.0));
    }

    #[test]
    fn a_gauge_without_a_sign_is_its_new_value() {
        let m = one("fuel.level:0.5|g");
        assert_eq!((m.kind, m.value), (Kind::Gauge, Value::Number(0.5)));
    }

    #[test]
    fn a_gauge_with_a_sign_is_a_delta() {
        assert_eq!(one("g:-5|g").value, Value::Delta(-5.0));
        assert_eq!(one("g:+10|g").value, Value::Delta(10.0));
        assert_eq!(one("g:+1.5|g").value, Value::Delta(1.5));
    }

    #[test]
    fn a_negative_gauge_is_set_by_zero_then_a_delta() {
        let mut out = Vec::new();
        for line in lines("temp:0|g\ntemp:-5|g\n") {
            parse_line(line, &mut out).unwrap();
        }
        let values: Vec<_> = out.iter().map(|m| m.value).collect();
        assert_eq!(values, [Value::Number(0.0), Value::Delta(-5.0)]);
    }

    #[test]
    fn gauges_and_sets_check_a_sample_rate_then_drop_it() {
        assert_eq!(one("g:1|g|@0.5").sample_rate, 1.0);
        assert_eq!(one("s:x|s|@0.5").sample_rate, 1.0);
        assert_eq!(reason("g:1|g|@5"), "sample rate `5` is not in (0, 1]");
        assert_eq!(reason("s:x|s|@x"), "sample rate `x` is not a number");
    }

    #[test]
    fn timers_histograms_and_distributions_are_numbers_with_rates() {
        for (line, kind) in [
            ("t:320|ms|@0.25", Kind::Timer),
            ("t:320|h|@0.25", Kind::Histogram),
            ("t:320|d|@0.25", Kind::Distribution),
        ] {
            let m = one(line);
            assert_eq!(
                (m.kind, m.value, m.sample_rate),
                (kind, Value::Number(320.0), 0.25)
            );
        }
        assert_eq!(one("t:-3.5e2|ms").value, Value::Number(-350.0));
    }

    #[test]
    fn a_set_takes_its_value_as_text() {
        let m = one("users.unique:u-1234|s");
        assert_eq!((m.kind, m.value), (Kind::Set, Value::Member("u-1234")));
        assert_eq!(one("users:été|s").value, Value::Member("été"));
        assert_eq!(one("users:-1|s").value, Value::Member("-1"));
    }

    #[test]
    fn a_set_member_may_hold_colons() {
        assert_eq!(
            one("peers:10.0.0.1:443|s").value,
            Value::Member("10.0.0.1:443")
        );
    }

    #[test]
    fn several_values_each_with_its_type_share_the_line() {
        let ms = parse("foo:1|c:200|ms|@0.5:+3|g:a|s").unwrap();
        let got: Vec<_> = ms
            .iter()
            .map(|m| (m.kind, m.value, m.sample_rate))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Counter, Value::Number(1.0), 1.0),
                (Kind::Timer, Value::Number(200.0), 0.5),
                (Kind::Gauge, Value::Delta(3.0), 1.0),
                (Kind::Set, Value::Member("a"), 1.0),
            ]
        );
        assert!(ms.iter().all(|m| m.name == "foo"));
    }

    #[test]
    fn a_rate_between_values_ends_at_the_next_colon() {
        let ms = parse("deploys:1|c|@0.1:101|c").unwrap();
        let got: Vec<_> = ms.iter().map(|m| (m.value, m.sample_rate)).collect();
        assert_eq!(
            got,
            [(Value::Number(1.0), 0.1), (Value::Number(101.0), 1.0)]
        );
    }

    #[test]
    fn packed_values_share_the_type_and_rate_after_them() {
        let ms = parse("lat:1.5:20:30|h|@0.5|#env:prod").unwrap();
        let got: Vec<_> = ms
            .iter()
            .map(|m| (m.kind, m.value, m.sample_rate))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Histogram, Value::Number(1.5), 0.5),
                (Kind::Histogram, Value::Number(20.0), 0.5),
                (Kind::Histogram, Value::Number(30.0), 0.5),
            ]
        );
        assert!(ms.iter().all(|m| m.tags == [("env", "prod")]));
        let gauges: Vec<_> = parse("g:1:+2:-3|g")
            .unwrap()
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(
            gauges,
            [Value::Number(1.0), Value::Delta(2.0), Value::Delta(-3.0)]
        );
    }

    #[test]
    fn tags_belong_to_every_metric_of_the_line() {
        let ms = parse("foo:1|c|@0.5|#a:b:2|ms").unwrap();
        // The tags run to the next `|`, so `b:2` is a's value and `ms` an unknown section.
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].tags, [("a", "b:2")]);

        let ms = parse("foo:1|c|@0.5:2|ms|#a:b,c").unwrap();
        assert_eq!(ms.len(), 2);
        assert!(ms.iter().all(|m| m.tags == [("a", "b"), ("c", "")]));
    }

    #[test]
    fn tags_split_at_their_first_colon_in_their_order() {
        let m = one("x:1|c|#url:http://h:80/p,env:prod,env:dev");
        assert_eq!(
            m.tags,
            [("url", "http://h:80/p"), ("env", "prod"), ("env", "dev")]
        );
    }

    #[test]
    fn a_tag_without_a_colon_has_an_empty_value() {
        assert_eq!(one("x:1|c|#canary").tags, [("canary", "")]);
        assert_eq!(one("x:1|c|#canary:").tags, [("canary", "")]);
    }

    #[test]
    fn empty_tag_items_are_skipped() {
        assert_eq!(one("x:1|c|#,a:b,,c:d,").tags, [("a", "b"), ("c", "d")]);
        assert_eq!(one("x:1|c|#").tags, []);
    }

    #[test]
    fn a_tag_with_an_empty_key_is_malformed() {
        assert_eq!(reason("x:1|c|#a:b,:v"), "tag `:v` has an empty key");
    }

    #[test]
    fn several_tag_sections_are_joined() {
        assert_eq!(one("x:1|c|#a:1|#b:2").tags, [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn container_ids_timestamps_and_unknown_sections_are_skipped() {
        let m = one("x:1|c|@0.5|#env:prod|c:83c0a99c0a54c0c187f461c7980e9b57f3f6a8b0c|T1656581400");
        assert_eq!((m.value, m.sample_rate), (Value::Number(1.0), 0.5));
        assert_eq!(m.tags, [("env", "prod")]);
        let m = one("x:1|c|e:it-false,cn-x,pu-y|card:low||zzz");
        assert_eq!(m.value, Value::Number(1.0));
        assert_eq!(m.tags, []);
        assert_eq!(parse("x:1|c|T1656581400:2|c").unwrap().len(), 2);
    }

    #[test]
    fn events_and_service_checks_give_nothing() {
        assert_eq!(parse("_e{5,4}:title|text|#env:prod").unwrap(), []);
        assert_eq!(
            parse("_sc|Redis connection|2|#env:dev|m:timed out").unwrap(),
            []
        );
    }

    #[test]
    fn a_blank_line_gives_nothing() {
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse(" \t ").unwrap(), []);
    }

    #[test]
    fn unknown_types_are_malformed() {
        assert_eq!(reason("x:1|x"), "unknown type `x`");
        assert_eq!(reason("x:1|m"), "unknown type `m`");
        assert_eq!(reason("x:1|C"), "unknown type `C`");
        assert_eq!(reason("x:1|"), "no type after the `|`");
        assert_eq!(reason("x:1||c"), "no type after the `|`");
    }

    #[test]
    fn a_value_without_a_type_is_malformed() {
        assert_eq!(reason("x:1"), "no `|` before the type");
        assert_eq!(reason("x:1:2"), "no `|` before the type");
        assert_eq!(reason("x:1|c:"), "no `|` before the type");
        assert_eq!(reason("x:1|c:2"), "no `|` before the type");
    }

    #[test]
    fn sample_rates_outside_zero_to_one_are_malformed() {
        assert_eq!(reason("x:1|c|@2"), "sample rate `2` is not in (0, 1]");
        assert_eq!(reason("x:1|c|@0"), "sample rate `0` is not in (0, 1]");
        assert_eq!(reason("x:1|c|@-0.5"), "sample rate `-0.5` is not in (0, 1]");
        assert_eq!(reason("x:1|c|@NaN"), "sample rate `NaN` is not in (0, 1]");
        assert_eq!(reason("x:1|c|@"), "sample rate `` is not a number");
        assert_eq!(reason("x:1|c|@abc"), "sample rate `abc` is not a number");
        assert_eq!(one("x:1|c|@1").sample_rate, 1.0);
        assert_eq!(one("x:1|c|@1e-3").sample_rate, 0.001);
    }

    #[test]
    fn values_must_be_finite_numbers() {
        assert_eq!(reason("x:abc|c"), "value `abc` is not a number");
        assert_eq!(reason("x:NaN|ms"), "value `NaN` is not finite");
        assert_eq!(reason("x:inf|g"), "value `inf` is not finite");
        assert_eq!(reason("x:-inf|g"), "value `-inf` is not finite");
        assert_eq!(reason("x:1e999|h"), "value `1e999` is not finite");
        assert_eq!(reason("x:1 |c"), "value `1 ` is not a number");
        assert_eq!(reason("x:+|g"), "value `+` is not a number");
        assert_eq!(reason("x:--1|g"), "value `--1` is not a number");
        assert_eq!(reason("x:0x10|c"), "value `0x10` is not a number");
        // Finite, but not what CloudWatch takes.
        for line in ["x:1e200|g", "x:-1e109|c", "x:1e-200|ms", "x:-1e-80|g"] {
            assert!(
                reason(line).contains("outside what CloudWatch takes"),
                "{line}"
            );
        }
        for line in ["x:0|g", "x:-0.0|g", "x:1e-70|g", "x:1e108|c"] {
            parse_line(line, &mut Vec::new()).unwrap();
        }
    }

    #[test]
    fn an_empty_value_is_malformed() {
        for line in ["x:|c", "x:|s", "x:1:|ms", "x:1::2|c"] {
            assert_eq!(reason(line), "empty value", "{line}");
        }
    }

    #[test]
    fn integers_read_as_the_float_parser_reads_them() {
        let mut n: u64 = 1;
        while n < 10_000_000_000_000_000 {
            for text in [
                n.to_string(),
                format!("-{n}"),
                format!("+{n}"),
                format!("0{n}"),
            ] {
                assert_eq!(
                    read_number(&text),
                    Ok(text.parse::<f64>().unwrap()),
                    "{text}"
                );
            }
            n = n * 7 + 3;
        }
        assert_eq!(read_number("-0").map(f64::is_sign_negative), Ok(true));
    }

    #[test]
    fn names_are_trimmed_and_must_be_there() {
        assert_eq!(one("  my metric \t:1|c ").name, "my metric");
        assert_eq!(one("a.b-c_d/e:1|c").name, "a.b-c_d/e");
        assert_eq!(reason(":1|c"), "empty name");
        assert_eq!(reason("  :1|c"), "empty name");
        assert_eq!(reason("x"), "no `:` after the name");
        assert_eq!(reason("x|c"), "no `:` after the name");
        assert_eq!(reason("a|b:1|c"), "name `a|b` holds a `|`");
    }

    #[test]
    fn a_malformed_line_appends_nothing() {
        let mut out = Vec::new();
        parse_line("kept:1|c", &mut out).unwrap();
        assert_eq!(
            parse_line("x:1|c:2|ms:oops|g", &mut out),
            Err(Malformed("value `oops` is not a number".to_owned()))
        );
        assert_eq!(
            parse_line("x:1|c:2|ms|#:bad", &mut out),
            Err(Malformed("tag `:bad` has an empty key".to_owned()))
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "kept");
    }

    #[test]
    fn metrics_are_appended_after_what_out_holds() {
        let mut out = Vec::new();
        parse_line("a:1|c|#x:1", &mut out).unwrap();
        parse_line("b:2|c:3|c|#y:2", &mut out).unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|m| (m.name, m.value, m.tags.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Value::Number(1.0), vec![("x", "1")]),
                ("b", Value::Number(2.0), vec![("y", "2")]),
                ("b", Value::Number(3.0), vec![("y", "2")]),
            ]
        );
    }

    #[test]
    fn a_reason_quotes_little_of_a_long_line() {
        let long = format!("x:1|{}", "é".repeat(1000));
        let r = reason(&long);
        assert!(r.starts_with("unknown type `éé"), "{r}");
        assert!(r.ends_with("…`"), "{r}");
        assert!(r.len() < 100, "{r}");
    }

    #[test]
    fn lines_are_split_on_newlines_without_carriage_returns_or_blanks() {
        let got: Vec<_> = lines("a:1|c\r\n\nb:2|g\n\r\n  \nc:3|ms").collect();
        assert_eq!(got, ["a:1|c", "b:2|g", "  ", "c:3|ms"]);
        assert_eq!(lines("").count(), 0);
        assert_eq!(lines("\n\r\n").count(), 0);
    }

    /// A small xorshift generator: deterministic garbage, without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parses `line` and checks what any parse must hold, whatever the input.
    fn parse_checked(line: &str) {
        let mut out = vec![];
        match parse_line(line, &mut out) {
            Ok(()) => {
                for m in &out {
                    assert!(!m.name.is_empty() && !m.name.contains([':', '|']), "{line}");
                    assert!(m.sample_rate > 0.0 && m.sample_rate <= 1.0, "{line}");
                    match m.value {
                        Value::Number(n) | Value::Delta(n) => assert!(n.is_finite(), "{line}"),
                        Value::Member(s) => assert!(!s.is_empty(), "{line}"),
                    }
                    assert!(m.tags.iter().all(|(k, _)| !k.is_empty()), "{line}");
                }
            }
            Err(Malformed(why)) => {
                assert!(out.is_empty(), "{line}");
                assert!(!why.is_empty() && why.len() < 200, "{line}: {why}");
            }
        }
    }

    #[test]
    fn no_input_makes_it_panic() {
        let valid = [
            "api.requests:1|c|@0.5|#env:prod,service:checkout,url:http://h:80/",
            "lat:1.5:20:30|h|@0.5|#env:prod|c:abc|T1656581400|e:x",
            "foo:1|c:200|ms|@0.1:+3|g:a:b|s",
            "temp:-5|g|#région:île",
            "_e{5,4}:title|text",
            "_sc|check|2",
        ];
        for line in valid {
            for end in 0..=line.len() {
                if let Some(prefix) = line.get(..end) {
                    parse_checked(prefix);
                }
                if let Some(suffix) = line.get(end..) {
                    parse_checked(suffix);
                }
            }
        }

        // Garbage weighted toward the characters that matter to the format.
        let alphabet: Vec<char> = ":|@#,.+-_ceghdmsT0123456789 \té€\u{1F600}\r\0eEinfa"
            .chars()
            .collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut line = String::new();
        for _ in 0..200_000 {
            line.clear();
            let len = rng.below(40);
            for _ in 0..len {
                line.push(alphabet[rng.below(alphabet.len())]);
            }
            parse_checked(&line);
        }

        // Valid lines with a few characters replaced, and plain random bytes.
        for _ in 0..50_000 {
            let mut chars: Vec<char> = valid[rng.below(valid.len())].chars().collect();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(chars.len());
                chars[at] = alphabet[rng.below(alphabet.len())];
            }
            parse_checked(&chars.into_iter().collect::<String>());

            let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            parse_checked(&String::from_utf8_lossy(&bytes));
        }
    }
}
