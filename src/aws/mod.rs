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
