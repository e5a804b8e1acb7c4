//! The AWS SDK's shared configuration: TLS, region, endpoint overrides and credentials.

mod cognito;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use cognito::CognitoCredentials;

use crate::config::Authentication;
use crate::instance::InstanceId;

/// An error and its causes on one line, `outer: inner: root`, without the SDK's debug dumps.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Builds the SDK configuration every client shares.
///
/// Without `authentication`, credentials and region come from the SDK's default chains
/// (environment, profile, SSO, credential_process, web identity, container, instance
/// metadata). With it, credentials come from Cognito as this device's user. Either way the
/// standard `AWS_ENDPOINT_URL` variables reach every client.
pub async fn sdk_config(
    region: Option<&str>,
    auth: Option<&Authentication>,
    instance_id: &InstanceId,
) -> SdkConfig {
    let region = region
        .map(str::to_owned)
        .or_else(|| auth.map(|a| a.user_pool_region().to_owned()))
        .map(Region::new);
    let mut loader = base_loader(region.clone());
    if let Some(auth) = auth {
        let unsigned = base_loader(region).no_credentials().load().await;
        loader = loader.credentials_provider(CognitoCredentials::new(
            &unsigned,
            auth.clone(),
            instance_id.clone(),
        ));
    }
    loader.load().await
}

/// The same configuration acting as `role_arn`: credentials from STS AssumeRole, asked for
/// with `sdk`'s credentials, cached and renewed before they expire like any others. The
/// session is named after the instance, so the role's trail shows which device acted.
pub async fn assume_role(sdk: &SdkConfig, role_arn: &str, instance_id: &InstanceId) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .configure(sdk)
        .session_name(session_name(instance_id.as_str()))
        .build()
        .await;
    sdk.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// A role session name: 2 to 64 of `[A-Za-z0-9+=,.@_-]`.
fn session_name(instance_id: &str) -> String {
    let mut name: String = format!("cloudwatch-publisher-{instance_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(64);
    name
}

pub(crate) fn base_loader(region: Option<Region>) -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(region);
    }
    loader
}

#[cfg(test)]
mod tests {
    use super::session_name;

    #[test]
    fn session_names_keep_to_what_sts_takes() {
        assert_eq!(
            session_name("rpi-00000000feedbeef"),
            "cloudwatch-publisher-rpi-00000000feedbeef"
        );
        assert_eq!(session_name("a b/c"), "cloudwatch-publisher-a_b_c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }
}
