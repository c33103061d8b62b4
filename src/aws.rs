//! The AWS SDK configuration every sink shares: region, credentials, endpoint, HTTP client.
//!
//! The SDK reads its standard environment itself (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_XRAY`,
//! the credentials chain incl. ECS task role and IMDSv2); this file adds what the X-Ray daemon
//! did on top: the region from ECS task metadata before IMDS, local mode that never asks
//! instance metadata, `-r` to assume a role, `-p` / `HTTPS_PROXY` for a proxy; and what the
//! other AWS SDKs honour but the Rust one does not: `[aws] ca_bundle` / `AWS_CA_BUNDLE`, extra
//! root certificates trusted for every call (checked at start, so a bad file is a clear
//! error rather than a failure on the first call). The
//! behaviour version is pinned so an SDK upgrade never changes timeouts silently, and the SDK's
//! own retries are off: the sinks' retry policy is the only retry layer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::meta::region::ProvideRegion;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_xray::config::SharedAsyncSleep;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{TlsContext, TrustStore};
use aws_smithy_http_client::{tls, Builder as HttpClientBuilder, Connector};
use aws_smithy_runtime_api::client::http::HttpConnectorSettings;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::AwsConfig;

pub(crate) mod credentials;
mod no_proxy;
pub(crate) mod sign;
pub use no_proxy::proxy_for;

/// Why the AWS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere in the chain.
    #[error(
        "no AWS region: set it with `-n/--region REGION`, `[aws] region` in the config file, \
         or the AWS_REGION environment variable{hint}"
    )]
    NoRegion {
        /// What else was tried.
        hint: &'static str,
    },
    /// The proxy address could not be used.
    #[error("`-p/--proxy-address` = {address:?} is not a usable proxy URL ({reason}): use http://HOST:PORT")]
    BadProxy {
        /// The address given.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The CA bundle could not be used.
    #[error(
        "{key} = {path:?}: {reason}; give a readable PEM file of CA certificates \
         (-----BEGIN CERTIFICATE----- blocks), or unset it to trust the system's roots only"
    )]
    BadCaBundle {
        /// Where it was set: `[aws] ca_bundle` or `AWS_CA_BUNDLE`.
        key: &'static str,
        /// The file named.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The resolved SDK configuration and the facts sinks need besides it.
#[derive(Debug, Clone)]
pub struct AwsContext {
    /// Shared by every client.
    pub sdk: SdkConfig,
    /// The region in use.
    pub region: String,
    /// How the SDK's calls leave the host, for the calls cloudtail makes without the SDK.
    pub http: HttpSetup,
}

/// The proxy and extra trusted roots of every AWS call, as the SDK's HTTP client applies them;
/// the sinks that send their own requests build their connector from the same settings, so
/// both kinds of call leave the host the same way.
#[derive(Debug, Clone, Default)]
pub struct HttpSetup {
    /// `-p`, or `HTTPS_PROXY`/`HTTP_PROXY` with `NO_PROXY`; `None` to connect directly.
    proxy: Option<ProxyConfig>,
    /// The system's roots plus `[aws] ca_bundle` / `AWS_CA_BUNDLE`; `None` for the SDK's
    /// default trust (the system's roots).
    tls: Option<TlsContext>,
}

impl HttpSetup {
    /// An HTTP connector (rustls with aws-lc, pooled) with these settings, the connector
    /// `settings` (timeouts) and the runtime's `sleep`: what the SDK builds for its own calls.
    pub fn connector(
        &self,
        settings: Option<&HttpConnectorSettings>,
        sleep: Option<SharedAsyncSleep>,
    ) -> Connector {
        let mut builder = Connector::builder();
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy_config(proxy.clone());
        }
        builder.set_connector_settings(settings.cloned());
        if let Some(sleep) = sleep {
            builder.set_sleep_impl(Some(sleep));
        }
        let builder = builder.tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        match &self.tls {
            Some(context) => builder.tls_context(context.clone()).build(),
            None => builder.build(),
        }
    }
}

/// How long one attempt may take before it counts as a timeout and is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the SDK configuration from the agent's settings and the standard environment.
pub async fn load(settings: &AwsConfig) -> Result<AwsContext, AwsError> {
    let region = resolve_region(settings).await.ok_or(AwsError::NoRegion {
        hint: if settings.local_mode {
            " (local mode skips ECS and EC2 metadata)"
        } else {
            " (ECS task metadata and EC2 instance metadata had none)"
        },
    })?;
    let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
        .region(Region::new(region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    let proxy = proxy_config(settings)?;
    let from_env = non_empty_env("AWS_CA_BUNDLE");
    let (key, path) = match (&settings.ca_bundle, &from_env) {
        (Some(path), _) => ("[aws] ca_bundle", path.clone()),
        (None, env) => (
            "AWS_CA_BUNDLE",
            PathBuf::from(env.clone().unwrap_or_default()),
        ),
    };
    let ca_bundle = ca_bundle(settings.ca_bundle.as_deref(), from_env)?;
    let tls = match ca_bundle {
        Some(pem) => {
            let trust = TrustStore::default().with_pem_certificate(pem);
            let context = TlsContext::builder().with_trust_store(trust).build();
            Some(context.map_err(|e| AwsError::BadCaBundle {
                key,
                path,
                reason: e.to_string(),
            })?)
        }
        None => None,
    };
    let http = HttpSetup { proxy, tls };
    if http.proxy.is_some() || http.tls.is_some() {
        let setup = http.clone();
        loader = loader.http_client(HttpClientBuilder::new().build_with_connector_fn(
            move |settings, components| {
                setup.connector(settings, components.and_then(|c| c.sleep_impl()))
            },
        ));
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let mut sdk = loader.load().await;
    if let Some(role_arn) = &settings.role_arn {
        sdk = assume_role(sdk, role_arn).await;
    }
    Ok(AwsContext { sdk, region, http })
}

/// Region order of the X-Ray daemon: flag/config, environment (and profile), ECS task
/// metadata, EC2 instance metadata (IMDSv2); the last two skipped in local mode.
async fn resolve_region(settings: &AwsConfig) -> Option<String> {
    if let Some(region) = &settings.region {
        return Some(region.clone());
    }
    let from_env = aws_config::environment::region::EnvironmentVariableRegionProvider::new();
    if let Some(region) = from_env.region().await {
        return Some(region.to_string());
    }
    let from_profile = aws_config::profile::ProfileFileRegionProvider::new();
    if let Some(region) = from_profile.region().await {
        return Some(region.to_string());
    }
    if settings.local_mode {
        return None;
    }
    if let Some(region) = crate::metadata::ecs_region().await {
        return Some(region);
    }
    let imds = aws_config::imds::region::ImdsRegionProvider::builder().build();
    imds.region().await.map(|r| r.to_string())
}

/// `-p` wins; else `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the environment, as every AWS
/// SDK honours them; `None` when neither is set.
fn proxy_config(settings: &AwsConfig) -> Result<Option<ProxyConfig>, AwsError> {
    if let Some(address) = &settings.proxy_address {
        let with_scheme = if address.contains("://") {
            address.clone()
        } else {
            format!("http://{address}")
        };
        let config = ProxyConfig::all(with_scheme).map_err(|e| AwsError::BadProxy {
            address: address.clone(),
            reason: e.to_string(),
        })?;
        let no_proxy = std::env::var("NO_PROXY")
            .or_else(|_| std::env::var("no_proxy"))
            .unwrap_or_default();
        return Ok(Some(if no_proxy.is_empty() {
            config
        } else {
            config.no_proxy(no_proxy)
        }));
    }
    let from_env = ProxyConfig::from_env();
    Ok((!from_env.is_disabled()).then_some(from_env))
}

/// The extra roots to trust: `[aws] ca_bundle` (`configured`), else `AWS_CA_BUNDLE` (`from_env`);
/// `None` when neither is set. The file must hold at least one PEM certificate, and every
/// certificate in it must be usable as a root: the HTTP client would otherwise fail (or abort)
/// on its first connection instead of here.
pub fn ca_bundle(
    configured: Option<&Path>,
    from_env: Option<String>,
) -> Result<Option<Vec<u8>>, AwsError> {
    let (key, path) = match (configured, from_env) {
        (Some(path), _) => ("[aws] ca_bundle", path.to_path_buf()),
        (None, Some(path)) => ("AWS_CA_BUNDLE", PathBuf::from(path)),
        (None, None) => return Ok(None),
    };
    let bad = |reason: String| AwsError::BadCaBundle {
        key,
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(&path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate {} is not usable ({e})", n + 1)))?;
    }
    Ok(Some(pem))
}

/// Wraps the credentials in an STS AssumeRole provider, refreshed by the SDK before expiry.
async fn assume_role(base: SdkConfig, role_arn: &str) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("cloudtail")
        .configure(&base)
        .build()
        .await;
    base.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// The X-Ray endpoint the sampling proxy forwards to: the explicit override, else
/// `AWS_ENDPOINT_URL_XRAY`, else `AWS_ENDPOINT_URL`, else the regional endpoint.
pub fn xray_endpoint(settings: &AwsConfig, region: &str) -> String {
    settings
        .endpoint
        .clone()
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL_XRAY"))
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| regional_endpoint("xray", region))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `https://SERVICE.REGION.amazonaws.com`, with the China partition's suffix where it applies.
pub fn regional_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_endpoints_follow_the_partition() {
        assert_eq!(
            regional_endpoint("xray", "us-east-1"),
            "https://xray.us-east-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("xray", "cn-north-1"),
            "https://xray.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn explicit_endpoint_wins_for_the_proxy() {
        let settings = AwsConfig {
            endpoint: Some("http://127.0.0.1:4566".into()),
            ..AwsConfig::default()
        };
        assert_eq!(
            xray_endpoint(&settings, "us-east-1"),
            "http://127.0.0.1:4566"
        );
    }

    #[test]
    fn a_bad_ca_bundle_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = ca_bundle(Some(&missing), None).unwrap_err().to_string();
        assert!(error.starts_with("[aws] ca_bundle = "), "{error}");
        assert!(error.contains("cannot read it"), "{error}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "just some text\n").unwrap();
        let env = Some(text.display().to_string());
        let error = ca_bundle(None, env).unwrap_err().to_string();
        assert!(error.starts_with("AWS_CA_BUNDLE = "), "{error}");
        assert!(error.contains("no certificate"), "{error}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let error = ca_bundle(Some(&broken), None).unwrap_err().to_string();
        assert!(error.contains("not valid PEM"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        let body = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&garbage, body).unwrap();
        let error = ca_bundle(Some(&garbage), None).unwrap_err().to_string();
        assert!(error.contains("certificate 1 is not usable"), "{error}");
    }

    #[test]
    fn no_ca_bundle_is_no_extra_roots() {
        assert!(ca_bundle(None, None).unwrap().is_none());
    }
}
