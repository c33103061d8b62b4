//! `PutTraceSegments` as one signed HTTP request, without the SDK's operation machinery.
//!
//! At 4,000 segments/s the SDK's per-call work (interceptors, runtime components, endpoint
//! and auth resolution, request and response conversions) cost as much as everything else the
//! agent does per segment, for a call whose body the sink already writes itself. So this file
//! resolves once, at start, what the SDK resolves per call — the endpoint (the SDK's own
//! resolver and precedence: `--endpoint`, `AWS_ENDPOINT_URL_XRAY`, `AWS_ENDPOINT_URL`, the
//! regional endpoint, FIPS and dual-stack), the region, the HTTP connector (the SDK's, with
//! the same proxy, trusted roots and connect timeout) — and per call only signs the body
//! (SigV4, service `xray`, credentials from the agent's chain through a refresh-ahead cache)
//! and sends it on a pooled connection.
//!
//! It talks to the credentials provider and the X-Ray endpoint. It must never retry (the sink
//! does) and never judges a failure other than as the SDK path did: every outcome is a
//! [`Verdict`] from the shared classification, or the list of unprocessed documents.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_xray::config::endpoint::{DefaultResolver, Params, ResolveEndpoint as _};
use aws_smithy_runtime_api::client::http::{
    HttpConnector as _, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use aws_types::service_config::ServiceConfigKey;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;

use super::{timestamp_now, TIMESTAMP_HEADER};
use crate::aws::credentials::CachedCredentials;
use crate::aws::sign::sign_request;
use crate::aws::{AwsContext, HttpSetup};
use crate::pipeline::retry::Retry;
use crate::sinks::classify::{classify_connector, classify_status, error_chain, verdict, Verdict};
use crate::telemetry::BackendError;

/// How long one attempt may take (credentials, connect, send, answer) before it counts as a
/// timeout: the SDK's attempt timeout in [`crate::aws`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting may take, as for the SDK's calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read; X-Ray's are a few hundred bytes (a list of unprocessed ids).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The API path of `PutTraceSegments` (REST JSON).
const PATH: &str = "/TraceSegments";

/// The X-Ray endpoint could not be resolved at start.
#[derive(Debug, thiserror::Error)]
#[error("no usable X-Ray endpoint ({endpoint}): {reason}")]
pub struct EndpointError {
    /// The endpoint as configured, or the region it was derived from.
    pub endpoint: String,
    /// What went wrong.
    pub reason: String,
}

/// One document X-Ray did not take, as its answer lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Unprocessed {
    /// The segment id.
    #[serde(default)]
    pub id: Option<String>,
    /// X-Ray's error code.
    #[serde(default)]
    pub error_code: Option<String>,
    /// X-Ray's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The `PutTraceSegments` transport: resolved once, shared by every sender.
#[derive(Debug)]
pub struct Transport {
    uri: http::Uri,
    host: HeaderValue,
    region: String,
    credentials: CachedCredentials,
    http: HttpSetup,
    /// Built on the first call: loading the trusted roots costs memory an idle agent does not
    /// need to pay, as for the SDK's own clients.
    connector: OnceLock<SharedHttpConnector>,
}

impl Transport {
    /// Resolves the endpoint the SDK would use for X-Ray in `aws`'s region.
    pub async fn new(aws: &AwsContext) -> Result<Self, EndpointError> {
        let configured = endpoint_url(&aws.sdk);
        let invalid = |reason: String| EndpointError {
            endpoint: configured.clone().unwrap_or_else(|| aws.region.clone()),
            reason,
        };
        let params = Params::builder()
            .region(aws.region.clone())
            .use_fips(aws.sdk.use_fips().unwrap_or(false))
            .use_dual_stack(aws.sdk.use_dual_stack().unwrap_or(false))
            .set_endpoint(configured.clone())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let resolver = DefaultResolver::new();
        let endpoint = resolver
            .resolve_endpoint(&params)
            .await
            .map_err(|e| invalid(error_chain(e.as_ref())))?;
        let uri: http::Uri = format!("{}{PATH}", endpoint.url().trim_end_matches('/'))
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
        let host = host_header(&uri).ok_or_else(|| invalid("no host".into()))?;
        let credentials = aws.sdk.credentials_provider().unwrap_or_else(|| {
            SharedCredentialsProvider::new(Credentials::new("", "", None, None, "missing"))
        });
        Ok(Transport {
            uri,
            host,
            region: aws.region.clone(),
            credentials: CachedCredentials::new(credentials),
            http: aws.http.clone(),
            connector: OnceLock::new(),
        })
    }

    /// One attempt: sign `body` and send it; the unprocessed documents, or why it failed.
    pub async fn put(&self, body: &Bytes) -> Result<Vec<Unprocessed>, Verdict> {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(body)).await {
            Ok(result) => result,
            Err(_) => Err(verdict(Retry::Yes, BackendError::Timeout, "timed out")),
        }
    }

    async fn attempt(&self, body: &Bytes) -> Result<Vec<Unprocessed>, Verdict> {
        // No credentials yet is retried: they may appear (a rotated file, an IMDS hiccup).
        let credentials = self.credentials.get().await.map_err(|e| {
            let detail = format!("no AWS credentials: {}", error_chain(&e));
            verdict(Retry::Yes, BackendError::Other, &detail)
        })?;
        let request = self.request(body, &credentials)?;
        let response = self
            .connector()
            .call(request)
            .await
            .map_err(|e| classify_connector(&e))?;
        read_answer(response).await
    }

    /// The signed request.
    fn request(&self, body: &Bytes, credentials: &Credentials) -> Result<HttpRequest, Verdict> {
        let unsignable = |detail: String| verdict(Retry::Yes, BackendError::Other, &detail);
        let mut request = http::Request::post(self.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .header(TIMESTAMP_HEADER, timestamp_now())
            .header(USER_AGENT, concat!("cloudtail/", env!("CARGO_PKG_VERSION")))
            .body(body.clone())
            .map_err(|e| unsignable(e.to_string()))?;
        sign_request(&mut request, credentials, &self.region, SystemTime::now())
            .map_err(|e| unsignable(error_chain(&e)))?;
        HttpRequest::try_from(request.map(SdkBody::from)).map_err(|e| unsignable(e.to_string()))
    }

    fn connector(&self) -> &SharedHttpConnector {
        self.connector.get_or_init(|| {
            let settings = HttpConnectorSettings::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build();
            SharedHttpConnector::new(self.http.connector(Some(&settings), None))
        })
    }
}

/// The endpoint URL set for X-Ray, with the SDK's precedence: one set in code (`--endpoint`,
/// `Endpoint` in the config) wins, then the X-Ray-specific setting (`AWS_ENDPOINT_URL_XRAY`,
/// or `endpoint_url` in the profile's `services` section), then the global one
/// (`AWS_ENDPOINT_URL`, the profile's `endpoint_url`); `None` for the regional endpoint.
fn endpoint_url(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(String::from);
    }
    let key = ServiceConfigKey::builder()
        .service_id("XRay")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| sdk.service_config()?.load_config(key))
        .or_else(|| sdk.endpoint_url().map(String::from))
}

/// `host` or `host:port`, leaving out the scheme's default port as HTTP clients do.
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// The answer: on 2xx the unprocessed documents, else the verdict on the error.
async fn read_answer(response: HttpResponse) -> Result<Vec<Unprocessed>, Verdict> {
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            let detail = format!("reading the answer failed: {}", error_chain(e.as_ref()));
            verdict(Retry::Yes, BackendError::Other, &detail)
        })?
        .to_bytes();
    if (200..300).contains(&status) {
        return parse_success(&body)
            .ok_or_else(|| verdict(Retry::Yes, BackendError::Other, "unreadable answer"));
    }
    Err(error_verdict(status, error_type.as_deref(), &body))
}

/// `{"UnprocessedTraceSegments":[...]}`; an empty body lists none.
fn parse_success(body: &[u8]) -> Option<Vec<Unprocessed>> {
    #[derive(Deserialize)]
    struct Output {
        #[serde(rename = "UnprocessedTraceSegments", default)]
        unprocessed: Option<Vec<Unprocessed>>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Vec::new());
    }
    let output: Output = serde_json::from_slice(body).ok()?;
    Some(output.unprocessed.unwrap_or_default())
}

/// An error answer judged as the SDK's error would be: the code from `X-Amzn-ErrorType`,
/// else the body's `code` or `__type`; the message from the body.
fn error_verdict(status: u16, error_type: Option<&str>, body: &[u8]) -> Verdict {
    #[derive(Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        code: Option<String>,
        #[serde(default, rename = "__type")]
        kind: Option<String>,
        #[serde(default, alias = "Message", alias = "errorMessage")]
        message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = error_type
        .or(parsed.code.as_deref())
        .or(parsed.kind.as_deref())
        .map(sanitize_error_code);
    let mut v = classify_status(status, code);
    v.detail = format!(
        "HTTP {status} {}: {}",
        code.unwrap_or("?"),
        parsed.message.as_deref().unwrap_or("")
    );
    v
}

/// `aws.protocols#ThrottledException:http://...` → `ThrottledException`, as the SDK reads it.
fn sanitize_error_code(code: &str) -> &str {
    let code = code.split_once(':').map_or(code, |(head, _)| head);
    code.split_once('#').map_or(code, |(_, tail)| tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprocessed_documents_are_read_from_the_answer() {
        let body = br#"{"UnprocessedTraceSegments":[{"Id":"70de5b6f19ff9a0a","ErrorCode":"InvalidTraceId","Message":"bad"}]}"#;
        let unprocessed = parse_success(body).expect("parsed");
        assert_eq!(
            unprocessed,
            [Unprocessed {
                id: Some("70de5b6f19ff9a0a".into()),
                error_code: Some("InvalidTraceId".into()),
                message: Some("bad".into()),
            }]
        );
        assert_eq!(parse_success(b"{}"), Some(Vec::new()));
        assert_eq!(parse_success(b""), Some(Vec::new()));
        assert_eq!(
            parse_success(br#"{"UnprocessedTraceSegments":[]}"#),
            Some(Vec::new())
        );
        assert_eq!(parse_success(b"<html>"), None);
    }

    #[test]
    fn error_answers_are_judged_by_their_code() {
        let throttled = error_verdict(
            429,
            Some("ThrottledException:http://internal.amazon.com/"),
            br#"{"message":"slow down"}"#,
        );
        assert_eq!(throttled.retry, Retry::Yes);
        assert_eq!(throttled.detail, "HTTP 429 ThrottledException: slow down");
        let from_body = error_verdict(
            400,
            None,
            br#"{"__type":"com.amazonaws.xray#ThrottledException","Message":"m"}"#,
        );
        assert_eq!(from_body.retry, Retry::Yes, "{from_body:?}");
        let refused = error_verdict(400, None, br#"{"code":"InvalidRequestException"}"#);
        assert_eq!(
            (refused.retry, refused.kind),
            (Retry::No, BackendError::Http4xx)
        );
        let denied = error_verdict(403, None, b"not json");
        assert_eq!(denied.retry, Retry::Yes, "credentials may be rotated");
        let server = error_verdict(500, None, b"");
        assert_eq!(
            (server.retry, server.kind),
            (Retry::Yes, BackendError::Http5xx)
        );
    }

    #[test]
    fn host_headers_leave_out_default_ports() {
        let host = |uri: &str| host_header(&uri.parse().expect("uri")).expect("host");
        assert_eq!(
            host("https://xray.us-east-1.amazonaws.com/TraceSegments"),
            "xray.us-east-1.amazonaws.com"
        );
        assert_eq!(
            host("http://127.0.0.1:4566/TraceSegments"),
            "127.0.0.1:4566"
        );
        assert_eq!(host("https://h:443/TraceSegments"), "h");
    }
}
