//! One client request in, one X-Ray call out, one response back.
//!
//! Owns the request rewrite (which headers pass, `Host`, `Content-Length`,
//! `X-Amzn-Xray-Timestamp`), the body limits, the upstream deadline, the mapping of failures to
//! `4xx`/`5xx` JSON answers, and the per-request log line and counters.
//! It talks to the credentials provider, [`crate::aws::sign`] and [`super::upstream`].
//! It must never pass hop-by-hop headers or the client's `Authorization`/`X-Amz-*` headers
//! upstream, read more than the body limits, or retry: a failed call is answered, not repeated.

use std::error::Error as StdError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body, Incoming};

use super::upstream::{Endpoint, UpstreamClient, UpstreamError};
use super::MAX_RESPONSE_BODY_BYTES;
use super::{ProxyCounters, ProxyError, ProxyOptions, ProxyTarget, MAX_REQUEST_BODY_BYTES};
use crate::aws::credentials::CachedCredentials;
use crate::aws::sign::{sign_request, SignError};

/// The timestamp header the X-Ray daemon adds to every X-Ray call.
const XRAY_TIMESTAMP: HeaderName = HeaderName::from_static("x-amzn-xray-timestamp");

/// Headers that describe one hop, or that the proxy sets itself: never copied across.
const DROPPED_HEADERS: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
    "host",
    "authorization",
];

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request was answered by the proxy instead of by X-Ray.
#[derive(Debug, thiserror::Error)]
pub(super) enum ForwardError {
    /// The client's body is over [`MAX_REQUEST_BODY_BYTES`].
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client's body could not be read.
    #[error("reading the request body failed")]
    ClientBody(#[source] BoxError),
    /// The client did not send its body within the upstream timeout.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    ClientTimeout {
        /// The deadline in milliseconds.
        timeout_ms: u128,
    },
    /// The request could not be mapped onto the endpoint.
    #[error("the request could not be rewritten for the endpoint")]
    Rewrite(#[source] http::Error),
    /// No credentials could be had.
    #[error("no AWS credentials available")]
    Credentials(#[source] CredentialsError),
    /// The credentials provider did not answer in time.
    #[error("no AWS credentials within {timeout_ms} ms")]
    CredentialsTimeout {
        /// The deadline in milliseconds.
        timeout_ms: u128,
    },
    /// The request could not be signed.
    #[error("signing the request failed")]
    Sign(#[source] SignError),
    /// The endpoint could not be reached or broke the exchange.
    #[error("the X-Ray endpoint request failed")]
    Upstream(#[source] UpstreamError),
    /// The endpoint's response body failed or was over [`MAX_RESPONSE_BODY_BYTES`].
    #[error("reading the X-Ray endpoint response failed")]
    UpstreamBody(#[source] BoxError),
    /// The endpoint did not answer in time.
    #[error("the X-Ray endpoint did not answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline in milliseconds.
        timeout_ms: u128,
    },
}

impl ForwardError {
    /// The status the client gets for this failure.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientBody(_) | Self::Rewrite(_) => StatusCode::BAD_REQUEST,
            Self::Sign(SignError::HeaderValue { .. }) => StatusCode::BAD_REQUEST,
            Self::ClientTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Credentials(_) | Self::CredentialsTimeout { .. } | Self::Sign(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Upstream(_) | Self::UpstreamBody(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// True when the client caused it (counted as `rejected`, not `upstream_errors`).
    pub(super) fn is_client_fault(&self) -> bool {
        self.status().is_client_error()
    }
}

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(super) struct Forwarder {
    endpoint: Endpoint,
    client: UpstreamClient,
    region: String,
    credentials: CachedCredentials,
    timeout: Duration,
    counters: Arc<ProxyCounters>,
}

impl Forwarder {
    /// Validates the target and builds the upstream client.
    pub(super) fn new(target: ProxyTarget, options: ProxyOptions) -> Result<Self, ProxyError> {
        Ok(Self {
            endpoint: Endpoint::parse(&target.endpoint)?,
            client: UpstreamClient::new(options.proxy.as_ref(), options.extra_roots.clone())?,
            region: target.region,
            credentials: CachedCredentials::new(target.credentials),
            timeout: options.upstream_timeout,
            counters: options.counters,
        })
    }

    /// Answers one client request: the endpoint's response, or the proxy's own error.
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = match self.forward(request).await {
            Ok(response) => response,
            Err(error) => self.failure(&error),
        };
        tracing::debug!(
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis(),
            "X-Ray sampling request proxied."
        );
        response
    }

    /// Reads, rewrites, signs and sends the request; reads the response.
    async fn forward(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ForwardError> {
        let (parts, body) = request.into_parts();
        let body = self.read_client_body(&parts.headers, body).await?;
        let mut outgoing = self.rewrite(&parts, body)?;
        let credentials = tokio::time::timeout(self.timeout, self.credentials.get())
            .await
            .map_err(|_| ForwardError::CredentialsTimeout {
                timeout_ms: self.timeout.as_millis(),
            })?
            .map_err(ForwardError::Credentials)?;
        sign_request(&mut outgoing, &credentials, &self.region, SystemTime::now())
            .map_err(ForwardError::Sign)?;
        let exchange = self.exchange(outgoing.map(Full::new));
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ForwardError::Timeout {
                timeout_ms: self.timeout.as_millis(),
            })?
    }

    /// The client's body, refused early when its `Content-Length` is already over the limit.
    async fn read_client_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, ForwardError> {
        let too_large = ForwardError::BodyTooLarge {
            limit: MAX_REQUEST_BODY_BYTES,
        };
        if declared_length(headers).is_some_and(|len| len > MAX_REQUEST_BODY_BYTES as u64) {
            return Err(too_large);
        }
        let read = read_limited(body, MAX_REQUEST_BODY_BYTES);
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(ForwardError::ClientTimeout {
                timeout_ms: self.timeout.as_millis(),
            }),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large),
            Ok(Err(error)) => Err(ForwardError::ClientBody(error)),
            Ok(Ok(bytes)) => Ok(bytes),
        }
    }

    /// The outgoing request: same method, path and end-to-end headers, on the endpoint.
    fn rewrite(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Request<Bytes>, ForwardError> {
        let uri = self
            .endpoint
            .uri_for(parts.uri.path_and_query())
            .map_err(ForwardError::Rewrite)?;
        let mut headers = forwardable_headers(&parts.headers);
        headers.insert(HOST, self.endpoint.host().clone());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(XRAY_TIMESTAMP, xray_timestamp(SystemTime::now()));
        let mut outgoing = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .body(body)
            .map_err(ForwardError::Rewrite)?;
        *outgoing.headers_mut() = headers;
        Ok(outgoing)
    }

    /// Sends the signed request and reads the whole response, hop-by-hop headers removed.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Full<Bytes>>, ForwardError> {
        let response = self
            .client
            .send(request)
            .await
            .map_err(ForwardError::Upstream)?;
        let (mut parts, body) = response.into_parts();
        let body = read_limited(body, MAX_RESPONSE_BODY_BYTES)
            .await
            .map_err(ForwardError::UpstreamBody)?;
        parts.headers = forwardable_headers(&parts.headers);
        Ok(Response::from_parts(parts, Full::new(body)))
    }

    /// Counts and logs `error`, and turns it into the client's JSON answer.
    fn failure(&self, error: &ForwardError) -> Response<Full<Bytes>> {
        if error.is_client_fault() {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %ErrorChain(error), "X-Ray sampling request rejected.");
        } else {
            self.counters
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %ErrorChain(error), "X-Ray sampling request failed.");
        }
        error_response(error.status(), &error.to_string())
    }
}

/// The `Content-Length` the client declared, when it declared exactly one valid value.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Collects a body of at most `limit` bytes (`LengthLimitError` past it).
async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    Ok(Limited::new(body, limit).collect().await?.to_bytes())
}

/// The end-to-end headers of `headers`: hop-by-hop ones, those named in `Connection`, and the
/// ones the proxy or the signer set (`Host`, `Content-Length`, `Authorization`, `X-Amz-*`) out.
pub(super) fn forwardable_headers(headers: &HeaderMap) -> HeaderMap {
    let named_in_connection: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !DROPPED_HEADERS.contains(&name)
                && !name.starts_with("x-amz-")
                && !named_in_connection.iter().any(|named| named == name)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// `X-Amzn-Xray-Timestamp`: epoch seconds with nine decimals, as the daemon sends it.
pub(super) fn xray_timestamp(now: SystemTime) -> HeaderValue {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let text = format!(
        "{}.{:09}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0.000000000"))
}

/// A proxy-made answer: `{"message": "..."}`.
fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = format!("{{\"message\":\"{}\"}}", json_escape(message));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Escapes `"` and `\` and drops control characters (our messages are plain ASCII text).
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Displays an error with its sources, `outer: inner: root`.
struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn timestamp_has_nine_decimals() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        assert_eq!(xray_timestamp(at), "1700000000.000005000");
    }

    #[test]
    fn hop_by_hop_and_signing_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:2000"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("authorization", "AWS4-HMAC-SHA256 old"),
            ("x-amz-date", "20200101T000000Z"),
            ("x-amz-security-token", "old"),
            ("content-length", "2"),
            ("content-type", "application/json"),
            ("amz-sdk-request", "attempt=1; max=3"),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            ),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let kept = forwardable_headers(&headers);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["amz-sdk-request", "content-type", "x-amzn-trace-id"]
        );
    }

    #[test]
    fn statuses_follow_the_blame() {
        let too_large = ForwardError::BodyTooLarge { limit: 1 };
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(too_large.is_client_fault());
        let timeout = ForwardError::Timeout { timeout_ms: 1 };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.is_client_fault());
    }

    #[tokio::test]
    async fn error_body_is_json() {
        let response = error_response(StatusCode::BAD_GATEWAY, "a \"quoted\"\n\\ message");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        assert_eq!(
            &body[..],
            br#"{"message":"a \"quoted\"\\ message"}"#.as_slice()
        );
    }
}
