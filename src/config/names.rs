//! CloudWatch's and Cognito's naming rules, as pure functions with the limits named.

/// Log group retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

pub const NAMESPACE_MAX_CHARS: usize = 255;
pub const LOG_GROUP_MAX_CHARS: usize = 512;
pub const LOG_STREAM_MAX_CHARS: usize = 512;
/// Cognito user names are at most 128 characters; the instance id is the user name.
pub const INSTANCE_ID_MAX_CHARS: usize = 128;

/// Placeholders a log group or stream name may contain, replaced at run time.
pub const GROUP_PLACEHOLDERS: &[&str] = &["{instance_id}", "{hostname}"];
pub const STREAM_PLACEHOLDERS: &[&str] = &["{instance_id}", "{hostname}", "{file_name}"];

/// Checks a metric namespace: 1–255 of `[0-9A-Za-z._\-/#: ]`, not only spaces, not `AWS/...`.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.trim().is_empty() {
        return Err("must contain at least one non-space character".into());
    }
    if ns.chars().count() > NAMESPACE_MAX_CHARS {
        return Err(format!("is longer than {NAMESPACE_MAX_CHARS} characters"));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_/#: ".contains(*c)))
    {
        return Err(format!(
            "contains {c:?}; allowed are letters, digits and . - _ / # : space"
        ));
    }
    if ns.starts_with("AWS/") {
        return Err("must not start with \"AWS/\" (reserved for AWS services)".into());
    }
    Ok(())
}

/// Checks a resolved log group name: 1–512 of `[.\-_/#A-Za-z0-9]`.
pub fn check_log_group(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > LOG_GROUP_MAX_CHARS {
        return Err(format!("is longer than {LOG_GROUP_MAX_CHARS} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/#".contains(*c)))
    {
        return Err(format!(
            "contains {c:?}; allowed are letters, digits and . _ - / #"
        ));
    }
    Ok(())
}

/// Checks a resolved log stream name: 1–512 characters, no `:` or `*`.
pub fn check_log_stream(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > LOG_STREAM_MAX_CHARS {
        return Err(format!("is longer than {LOG_STREAM_MAX_CHARS} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == ':' || *c == '*' || c.is_control())
    {
        return Err(format!("contains {c:?}, which a log stream name cannot"));
    }
    Ok(())
}

/// Checks a name template: only known placeholders, and the name with every placeholder
/// replaced by a plain word must pass `check`.
pub fn check_template(
    template: &str,
    placeholders: &[&str],
    check: fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        match after.find('}') {
            Some(close) if placeholders.contains(&&after[..=close]) => {
                rest = &after[close + 1..];
            }
            Some(close) => {
                return Err(format!(
                    "has unknown placeholder {}; known are {}",
                    &after[..=close],
                    placeholders.join(", ")
                ))
            }
            None => return Err("has a '{' without a closing '}'".into()),
        }
    }
    let mut sample = template.to_owned();
    for p in placeholders {
        sample = sample.replace(p, "x");
    }
    check(&sample)
}

/// Checks an instance id, which is both the Cognito user name and the `InstanceId` dimension:
/// 1–128 characters, no whitespace or control characters.
pub fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.chars().count() > INSTANCE_ID_MAX_CHARS {
        return Err(format!(
            "is longer than {INSTANCE_ID_MAX_CHARS} characters (the Cognito user name limit)"
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {c:?}; Cognito user names and dimension values cannot hold whitespace or control characters"
        ));
    }
    Ok(())
}

/// Checks an IAM role's ARN: `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .and_then(|name| name.rsplit('/').next())
            .is_some_and(|name| {
                (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
            });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN such as \"arn:aws:iam::123456789012:role/CloudWatchPublisher\""
        ))
    }
}

/// Checks an AWS region name such as `us-east-1` or `us-gov-west-1`.
pub fn check_region(region: &str) -> Result<(), String> {
    let mut parts = region.split('-');
    let ok = parts
        .next()
        .is_some_and(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_lowercase()))
        && region
            .rsplit('-')
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && region.split('-').count() >= 3
        && region.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name such as \"us-east-1\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert!(check_namespace("System/Default").is_ok());
        assert!(check_namespace("My App: prod#1").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("   ").is_err());
        assert!(check_namespace("AWS/EC2").unwrap_err().contains("reserved"));
        assert!(check_namespace("a\u{e9}").unwrap_err().contains("'é'"));
        assert!(check_namespace(&"a".repeat(256)).is_err());
        assert!(check_namespace(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn log_groups_and_streams() {
        assert!(check_log_group("/system/default/rpi-1234").is_ok());
        assert!(check_log_group("bad group").is_err());
        assert!(check_log_group(&"a".repeat(513)).is_err());
        assert!(check_log_stream("syslog").is_ok());
        assert!(check_log_stream("a:b").is_err());
        assert!(check_log_stream("a*b").is_err());
        assert!(check_log_stream("").is_err());
    }

    #[test]
    fn templates() {
        assert!(
            check_template("/system/{instance_id}", GROUP_PLACEHOLDERS, check_log_group).is_ok()
        );
        let e = check_template("/system/{nope}", GROUP_PLACEHOLDERS, check_log_group).unwrap_err();
        assert!(e.contains("{nope}"), "{e}");
        assert!(
            check_template("/system/{instance_id", GROUP_PLACEHOLDERS, check_log_group).is_err()
        );
        assert!(check_template("/a b/{hostname}", GROUP_PLACEHOLDERS, check_log_group).is_err());
        assert!(check_template("{file_name}", STREAM_PLACEHOLDERS, check_log_stream).is_ok());
        assert!(check_template("{file_name}", GROUP_PLACEHOLDERS, check_log_group).is_err());
    }

    #[test]
    fn instance_ids() {
        assert!(check_instance_id("rpi-10000000abcdef01").is_ok());
        assert!(check_instance_id("").is_err());
        assert!(check_instance_id("a b").is_err());
        assert!(check_instance_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-5",
        ] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "us-east", "US-EAST-1", "useast1", "us--1", "us-east-1 "] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_list_is_current() {
        assert_eq!(RETENTION_DAYS.len(), 22);
        assert!(RETENTION_DAYS.contains(&1096) && RETENTION_DAYS.contains(&3288));
        assert!(!RETENTION_DAYS.contains(&8));
    }
}
