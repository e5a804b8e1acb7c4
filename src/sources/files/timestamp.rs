//! An event's time from its own text: the CloudWatch Agent's `timestamp_format` (strftime
//! tokens), found anywhere in the line (the first match counts, as in the agent), read in
//! `timezone` (`Local` or `UTC`) unless the text carries its own offset (`%z`).
//!
//! Tokens: `%Y %y %m %-m %b %B %d %-d %j %H %-H %I %-I %p %M %-M %S %-S %f %a %A %Z %z %%`.
//! `%f` is a fraction of a second of 1 to 9 digits (milliseconds are kept); the separator before
//! it is written in the format (`%S.%f` or `%S,%f`). A format without a year takes this year (the
//! last one if that would be more than 30 days ahead, as the agent does); one without a date
//! takes today (yesterday if that would be more than an hour ahead).

use std::ops::Range;

use regex::Regex;

/// What a capture group of the compiled pattern holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Year4,
    Year2,
    Month,
    MonthName,
    Day,
    DayOfYear,
    Hour24,
    Hour12,
    AmPm,
    Minute,
    Second,
    Fraction,
    Zone,
    Offset,
}

/// A compiled `timestamp_format`.
#[derive(Debug, Clone)]
pub struct TimestampFormat {
    format: String,
    regex: Regex,
    parts: Vec<Part>,
    utc: bool,
}

/// Broken-down time as read from a line.
#[derive(Debug, Default, Clone, Copy)]
struct Fields {
    year: Option<i64>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: u32,
    pm: Option<bool>,
    minute: u32,
    second: u32,
    millis: u32,
    /// Seconds east of UTC, when the text says.
    offset: Option<i64>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl TimestampFormat {
    /// Compiles `format`; `utc` reads times without their own offset as UTC, else as local time.
    pub fn new(format: &str, utc: bool) -> Result<TimestampFormat, String> {
        let mut pattern = String::from("(?:");
        let mut parts = Vec::new();
        let mut chars = format.chars().peekable();
        let mut any = false;
        while let Some(c) = chars.next() {
            if c != '%' {
                pattern.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            let mut token = String::new();
            if chars.peek() == Some(&'-') {
                token.push(chars.next().unwrap_or('-'));
            }
            let Some(t) = chars.next() else {
                return Err(format!("{format:?} ends with a lone %"));
            };
            token.push(t);
            let (re, part) = match token.as_str() {
                "Y" => (r"(\d{4})", Some(Part::Year4)),
                "y" => (r"(\d{2})", Some(Part::Year2)),
                "m" | "-m" => (r"\s?(\d{1,2})", Some(Part::Month)),
                "b" => (r"([A-Za-z]{3})", Some(Part::MonthName)),
                "B" => (r"([A-Za-z]{3,9})", Some(Part::MonthName)),
                "d" | "-d" => (r"\s?(\d{1,2})", Some(Part::Day)),
                "j" => (r"(\d{3})", Some(Part::DayOfYear)),
                "H" => (r"(\d{2})", Some(Part::Hour24)),
                "-H" => (r"(\d{1,2})", Some(Part::Hour24)),
                "I" => (r"(\d{2})", Some(Part::Hour12)),
                "-I" => (r"(\d{1,2})", Some(Part::Hour12)),
                "p" => (r"([AaPp][Mm])", Some(Part::AmPm)),
                "M" => (r"(\d{2})", Some(Part::Minute)),
                "-M" => (r"(\d{1,2})", Some(Part::Minute)),
                "S" => (r"(\d{2})", Some(Part::Second)),
                "-S" => (r"(\d{1,2})", Some(Part::Second)),
                "f" => (r"(\d{1,9})", Some(Part::Fraction)),
                "a" => (r"[A-Za-z]{3}", None),
                "A" => (r"[A-Za-z]{6,9}", None),
                "Z" => (r"([A-Za-z]{1,5})", Some(Part::Zone)),
                "z" => (r"([+-]\d{2}:?\d{2}|Z)", Some(Part::Offset)),
                "%" => ("%", None),
                other => {
                    return Err(format!(
                        "%{other} in {format:?} is not a timestamp_format token (known: %Y %y %m %-m %b %B %d %-d %j %H %-H %I %-I %p %M %-M %S %-S %f %a %A %Z %z %%)"
                    ))
                }
            };
            any |= part.is_some();
            pattern.push_str(re);
            parts.extend(part);
        }
        pattern.push(')');
        if !any {
            return Err(format!("{format:?} has no time in it (such as %H:%M:%S)"));
        }
        let has = |p: Part| parts.contains(&p);
        if has(Part::Hour12) != has(Part::AmPm) {
            return Err(format!("{format:?}: %I needs %p, and %p needs %I"));
        }
        let regex = Regex::new(&pattern).map_err(|e| e.to_string())?;
        Ok(TimestampFormat {
            format: format.to_owned(),
            regex,
            parts,
            utc,
        })
    }

    pub fn format(&self) -> &str {
        &self.format
    }

    /// Whether `line` has a time in this format anywhere.
    pub fn matches(&self, line: &str) -> bool {
        self.regex.is_match(line)
    }

    /// Whether times without their own offset are read as UTC (else as local time).
    pub fn utc(&self) -> bool {
        self.utc
    }

    /// The time of the first timestamp in `line` (ms since the epoch) and where it is; `now_ms`
    /// supplies a missing year or date.
    pub fn find(
        &self,
        line: &str,
        now_ms: i64,
        local: &mut LocalOffset,
    ) -> Option<(i64, Range<usize>)> {
        let caps = self.regex.captures(line)?;
        let whole = caps.get(0)?.range();
        let mut f = Fields::default();
        for (i, part) in self.parts.iter().enumerate() {
            let text = caps.get(i + 1)?.as_str();
            let num = || text.parse::<u32>().ok();
            match part {
                Part::Year4 => f.year = Some(i64::from(num()?)),
                Part::Year2 => {
                    // As Go and the agent read two-digit years: 69–99 are the 1900s.
                    let y = i64::from(num()?);
                    f.year = Some(if y >= 69 { 1900 + y } else { 2000 + y });
                }
                Part::Month => f.month = Some(num()?),
                Part::MonthName => {
                    let lower = text.to_ascii_lowercase();
                    let m = MONTHS.iter().position(|m| lower.starts_with(m))?;
                    f.month = Some(m as u32 + 1);
                }
                Part::Day => f.day = Some(num()?),
                Part::DayOfYear => f.day_of_year = Some(num()?),
                Part::Hour24 | Part::Hour12 => f.hour = num()?,
                Part::AmPm => f.pm = Some(text.eq_ignore_ascii_case("pm")),
                Part::Minute => f.minute = num()?,
                Part::Second => f.second = num()?,
                Part::Fraction => {
                    let digits: String = text.chars().chain("000".chars()).take(3).collect();
                    f.millis = digits.parse().ok()?;
                }
                Part::Zone => {
                    if ["UTC", "GMT", "Z", "UT"]
                        .iter()
                        .any(|z| text.eq_ignore_ascii_case(z))
                    {
                        f.offset = Some(0);
                    }
                }
                Part::Offset => f.offset = Some(parse_offset(text)?),
            }
        }
        if let Some(pm) = f.pm {
            if !(1..=12).contains(&f.hour) {
                return None;
            }
            f.hour = f.hour % 12 + if pm { 12 } else { 0 };
        }
        let ms = self.to_epoch_ms(f, now_ms, local)?;
        Some((ms, whole))
    }

    fn to_epoch_ms(&self, mut f: Fields, now_ms: i64, local: &mut LocalOffset) -> Option<i64> {
        if f.hour > 23 || f.minute > 59 || f.second > 60 {
            return None;
        }
        let zone = |days: i64, local: &mut LocalOffset| -> i64 {
            let secs = days * 86_400
                + i64::from(f.hour) * 3600
                + i64::from(f.minute) * 60
                + i64::from(f.second.min(59));
            match f.offset {
                Some(off) => secs - off,
                None if self.utc => secs,
                None => secs - local.offset_at(secs),
            }
        };
        let now_days = now_ms.div_euclid(86_400_000);
        let (today_y, _, _) = civil_from_days(now_days);
        let no_year = f.year.is_none();
        let year = f.year.unwrap_or(today_y);
        let days = match (f.month, f.day, f.day_of_year) {
            (Some(m), Some(d), _) => {
                if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
                    return None;
                }
                days_from_civil(year, m, d)
            }
            (None, None, Some(j)) if (1..=366).contains(&j) => {
                days_from_civil(year, 1, 1) + i64::from(j) - 1
            }
            (None, None, None) => {
                // Only a time of day: today, or yesterday if that is more than an hour ahead.
                let secs = zone(now_days, local);
                let secs = if secs * 1000 > now_ms + 3_600_000 {
                    secs - 86_400
                } else {
                    secs
                };
                return Some(secs * 1000 + i64::from(f.millis));
            }
            _ => return None,
        };
        let mut secs = zone(days, local);
        if no_year && secs * 1000 > now_ms + 30 * 86_400_000 {
            // The agent's rule: a date without a year more than 30 days ahead is last year's.
            if let (Some(m), Some(d)) = (f.month, f.day) {
                f.year = Some(year - 1);
                secs = zone(days_from_civil(year - 1, m, d), local);
            }
        }
        Some(secs * 1000 + i64::from(f.millis))
    }
}

/// `+0530`, `-07:00` or `Z` → seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    if text == "Z" {
        return Some(0);
    }
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    let h: i64 = digits.get(..2)?.parse().ok()?;
    let m: i64 = digits.get(2..4)?.parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS", in UTC.
pub fn utc_text(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The local time zone's offset from UTC, asked of the C library (which knows the zone's rules
/// and TZ) once per local hour and kept: an offset changes at most at an hour's start.
#[derive(Debug, Default)]
pub struct LocalOffset {
    /// (local seconds at the start of the hour, seconds east of UTC)
    last: Option<(i64, i64)>,
}

impl LocalOffset {
    /// Seconds east of UTC for the local wall time `local_secs` (seconds since the epoch as
    /// if local time were UTC).
    pub fn offset_at(&mut self, local_secs: i64) -> i64 {
        let hour = local_secs.div_euclid(3600) * 3600;
        if let Some((h, off)) = self.last {
            if h == hour {
                return off;
            }
        }
        let off = local_offset(hour);
        self.last = Some((hour, off));
        off
    }
}

fn local_offset(local_secs: i64) -> i64 {
    let days = local_secs.div_euclid(86_400);
    let rem = local_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // SAFETY: a zeroed tm is valid; mktime reads it and writes the normalized fields back.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = (y - 1900) as i32;
    tm.tm_mon = m as i32 - 1;
    tm.tm_mday = d as i32;
    tm.tm_hour = (rem / 3600) as i32;
    tm.tm_min = (rem % 3600 / 60) as i32;
    tm.tm_sec = (rem % 60) as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, initialized struct.
    let utc = unsafe { libc::mktime(&mut tm) };
    if utc == -1 {
        return 0;
    }
    local_secs - utc as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_040_000_000; // 2026-11-30T12:00:00Z

    fn at(format: &str, line: &str) -> Option<(i64, Range<usize>)> {
        TimestampFormat::new(format, true)
            .unwrap()
            .find(line, NOW, &mut LocalOffset::default())
    }

    fn ms(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> i64 {
        (days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s) * 1000
    }

    #[test]
    fn formats_from_the_agents_documentation_and_java_logs() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let (t, r) = at(
            "%Y-%m-%d %H:%M:%S.%f",
            "2026-11-30 09:15:02.123456 ERROR boom",
        )
        .unwrap();
        assert_eq!(t, ms(2026, 11, 30, 9, 15, 2) + 123);
        assert_eq!(r, 0..26);
        let (t, _) = at(
            "%Y-%m-%d %H:%M:%S,%f",
            "[main] 2026-11-30 09:15:02,7 INFO x",
        )
        .unwrap();
        assert_eq!(
            t,
            ms(2026, 11, 30, 9, 15, 2) + 700,
            "anywhere in the line; one digit is tenths"
        );
        // syslog: no year, a space-padded day.
        let (t, _) = at("%b %d %H:%M:%S", "Nov  3 04:05:06 pi sshd[1]: ok").unwrap();
        assert_eq!(t, ms(2026, 11, 3, 4, 5, 6));
        // ... and a date more than 30 days ahead is last year's.
        let (t, _) = at("%b %d %H:%M:%S", "Dec 31 23:59:59 pi x").unwrap();
        assert_eq!(t, ms(2025, 12, 31, 23, 59, 59));
        let (t, _) = at(
            "%d/%b/%Y:%H:%M:%S %z",
            r#"1.2.3.4 - - [30/Nov/2026:10:00:00 +0200] "GET /""#,
        )
        .unwrap();
        assert_eq!(t, ms(2026, 11, 30, 8, 0, 0), "the line's own offset wins");
        let (t, _) = at(
            "%A, %B %-d, %Y %-I:%M:%S %p",
            "Monday, November 2, 2026 3:04:05 PM x",
        )
        .unwrap();
        assert_eq!(t, ms(2026, 11, 2, 15, 4, 5));
        let (t, _) = at("%I:%M:%S %p", "12:30:00 AM boot").unwrap();
        assert_eq!(t, ms(2026, 11, 30, 0, 30, 0), "a time only is today's");
        let (t, _) = at("%Y %j %H:%M", "2026 335 01:02").unwrap();
        assert_eq!(t, ms(2026, 12, 1, 1, 2, 0));
        let (t, _) = at("%y%m%d %-H:%M:%S", "261130 7:08:09").unwrap();
        assert_eq!(t, ms(2026, 11, 30, 7, 8, 9));
        assert!(at("%Y-%m-%d %H:%M:%S", "no time here").is_none());
        assert!(
            at("%Y-%m-%d %H:%M:%S", "2026-13-01 00:00:00").is_none(),
            "no 13th month"
        );
    }

    #[test]
    fn local_time_follows_the_zone_and_bad_formats_are_refused() {
        let f = TimestampFormat::new("%Y-%m-%d %H:%M:%S", false).unwrap();
        let mut local = LocalOffset::default();
        let (t, _) = f.find("2026-06-01 12:00:00", NOW, &mut local).unwrap();
        // Whatever this machine's zone, the offset is whole minutes and under 15 hours.
        let off = ms(2026, 6, 1, 12, 0, 0) - t;
        assert!(off.abs() <= 15 * 3_600_000 && off % 60_000 == 0, "{off}");
        assert!(TimestampFormat::new("%Q", true).unwrap_err().contains("%Q"));
        assert!(TimestampFormat::new("plain", true).is_err());
        assert!(TimestampFormat::new("%I:%M", true).is_err());
        assert_eq!(parse_offset("-07:00"), Some(-25_200));
    }
}
