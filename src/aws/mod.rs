//! The AWS SDK's shared configuration: TLS, region, endpoint overrides and credentials.

mod cognito;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use cognito::CognitoCredentials;

use aws_smithy_http_client::proxy::ProxyConfig;

use crate::config::{Authentication, Proxy};
use crate::instance::InstanceId;

/// The proxy AWS calls go through, as shown in messages; set when the SDK is configured.
static PROXY_SHOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// An error and its causes on one line, `outer: inner: root`, without the SDK's debug dumps.
/// An error that is not the service's answer (no connection, a connection cut, a timeout, an
/// answer that is not AWS's) names the proxy the call went through, if any: the proxy may be
/// what failed.
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
    if let Some(proxy) = PROXY_SHOWN.get() {
        if !out.starts_with("service error") {
            out.push_str(&format!(" (through the proxy {proxy})"));
        }
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
    proxy: Option<&Proxy>,
) -> SdkConfig {
    let region = region
        .map(str::to_owned)
        .or_else(|| auth.map(|a| a.user_pool_region().to_owned()))
        .map(Region::new);
    let mut loader = base_loader(region.clone(), proxy);
    if let Some(auth) = auth {
        let unsigned = base_loader(region, proxy).no_credentials().load().await;
        loader = loader.credentials_provider(CognitoCredentials::new(
            &unsigned,
            auth.clone(),
            instance_id.clone(),
        ));
    }
    loader.load().await
}

/// What the HTTP client is told of proxies: `agent.proxy` for every call (but the hosts its
/// `no_proxy` lists), or the environment's variables, read by the client as curl reads them.
fn proxy_config(proxy: Option<&Proxy>) -> ProxyConfig {
    let Some(p) = proxy else {
        return ProxyConfig::from_env();
    };
    let Ok(mut config) = ProxyConfig::all(p.url.as_str()) else {
        // The URL was checked with the config; a proxy that cannot be used is no reason to
        // send around it.
        return ProxyConfig::all("http://invalid-proxy-url.invalid")
            .unwrap_or_else(|_| ProxyConfig::disabled());
    };
    if let Some(user) = &p.user {
        config = config.with_basic_auth(
            user.as_str(),
            p.password.as_ref().map(|s| s.expose()).unwrap_or_default(),
        );
    }
    if let Some(rules) = &p.no_proxy {
        config = config.no_proxy(rules);
    }
    config
}

/// The proxy in use, for messages: `agent.proxy`, or the variable that names one (without
/// its credentials); `None` when calls go straight out.
pub fn proxy_in_use(proxy: Option<&Proxy>) -> Option<String> {
    if let Some(p) = proxy {
        return Some(p.url.clone());
    }
    // AWS's endpoints are https; HTTP_PROXY applies only to an http endpoint (an emulator).
    let http_endpoint = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.starts_with("http://"));
    [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .into_iter()
    .filter(|var| http_endpoint || !var.eq_ignore_ascii_case("HTTP_PROXY"))
    .find_map(|var| {
        let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
        let shown = Proxy::parse(&value)
            .map(|p| p.url)
            .unwrap_or_else(|_| "an unreadable URL".into());
        Some(format!("{shown} (from {var})"))
    })
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

/// The loader every client starts from: rustls, timeouts, and the proxy (`proxy`, else
/// the environment's `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, either case).
pub(crate) fn base_loader(
    region: Option<Region>,
    proxy: Option<&Proxy>,
) -> aws_config::ConfigLoader {
    if let Some(shown) = proxy_in_use(proxy) {
        let _ = PROXY_SHOWN.set(shown);
    }
    let proxy = proxy_config(proxy);
    // The SDK's connector builder takes a proxy only when the connector is built by hand; the
    // HTTP client still keeps one connector (and its connection pool) per timeout setting.
    let http = aws_smithy_http_client::Builder::new().build_with_connector_fn(
        move |settings, components| {
            let mut connector = aws_smithy_http_client::Connector::builder();
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector
                .proxy_config(proxy.clone())
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build()
        },
    );
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
