//! How a failed AWS call is judged: retry or not, and which telemetry category it falls in.
//!
//! Shared by every sink because the SDK's error shape is the same for all services: an HTTP
//! status and an error code for service errors, a connector error for calls that never got an
//! answer. The decision itself is pure (`classify_status`) so it is unit-tested per case.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::pipeline::retry::Retry;
use crate::telemetry::BackendError;

/// The verdict on one failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Retry or give up.
    pub retry: Retry,
    /// Telemetry category.
    pub kind: BackendError,
    /// A short description for the log line.
    pub detail: String,
}

/// Judges any SDK error.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> Verdict
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::TimeoutError(_) => verdict(Retry::Yes, BackendError::Timeout, "timed out"),
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(connector) => classify_connector(connector),
            None => verdict(Retry::Yes, BackendError::Other, "request not sent"),
        },
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            let mut v = classify_status(status, code);
            v.detail = format!(
                "HTTP {status} {}: {}",
                code.unwrap_or("?"),
                service.err().message().unwrap_or("")
            );
            v
        }
        SdkError::ResponseError(response) => {
            classify_status(response.raw().status().as_u16(), None)
        }
        // Building the request failed, most often because no credentials could be loaded yet:
        // they may appear (a rotated file, an IMDS hiccup), so this is retried too.
        _ => verdict(Retry::Yes, BackendError::Other, &error_chain(error)),
    }
}

/// Status code and error code to a verdict. Throttling, 5xx and credential failures retry;
/// a request the service calls malformed does not.
pub fn classify_status(status: u16, code: Option<&str>) -> Verdict {
    let code_str = code.unwrap_or("");
    let throttled =
        status == 429 || code_str.contains("Throttl") || code_str == "RequestLimitExceeded";
    let credentials = is_credential_error(status, code_str);
    let detail = format!("HTTP {status} {code_str}");
    match status {
        500..=599 => verdict(Retry::Yes, BackendError::Http5xx, &detail),
        _ if throttled || credentials => verdict(Retry::Yes, BackendError::Http4xx, &detail),
        400..=499 => verdict(Retry::No, BackendError::Http4xx, &detail),
        _ => verdict(Retry::Yes, BackendError::Other, &detail),
    }
}

/// True when the failure is about who is calling (expired or unknown keys, a bad signature,
/// a missing permission): a person must act, yet retrying picks up rotated credentials.
pub fn is_credential_error(status: u16, code: &str) -> bool {
    matches!(
        code,
        "ExpiredTokenException"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "AccessDeniedException"
            | "AccessDenied"
            | "RequestExpired"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
    ) || status == 401
        || status == 403
}

/// A call that got no answer: the cause decides the category; all of them retry.
pub fn classify_connector(error: &ConnectorError) -> Verdict {
    let chain = error_chain(error);
    let kind = if error.is_timeout() {
        BackendError::Timeout
    } else if has_io_kind(error, std::io::ErrorKind::ConnectionRefused) {
        BackendError::ConnectionRefused
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        BackendError::UnknownHost
    } else {
        BackendError::Other
    };
    verdict(Retry::Yes, kind, &chain)
}

fn has_io_kind(error: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == kind {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// The error and its causes on one line, for a log message.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

/// A verdict with `detail` as its text.
pub fn verdict(retry: Retry, kind: BackendError, detail: &str) -> Verdict {
    Verdict {
        retry,
        kind,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_retry() {
        assert_eq!(
            classify_status(429, Some("ThrottledException")).retry,
            Retry::Yes
        );
        assert_eq!(
            classify_status(400, Some("ThrottlingException")).retry,
            Retry::Yes
        );
        let v = classify_status(503, None);
        assert_eq!((v.retry, v.kind), (Retry::Yes, BackendError::Http5xx));
    }

    #[test]
    fn credential_errors_retry_malformed_requests_do_not() {
        assert_eq!(
            classify_status(403, Some("UnrecognizedClientException")).retry,
            Retry::Yes
        );
        assert_eq!(
            classify_status(400, Some("ExpiredTokenException")).retry,
            Retry::Yes
        );
        let v = classify_status(400, Some("InvalidRequestException"));
        assert_eq!((v.retry, v.kind), (Retry::No, BackendError::Http4xx));
        assert_eq!(classify_status(413, None).retry, Retry::No);
    }

    #[test]
    fn io_kinds_are_found_in_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(has_io_kind(&e, std::io::ErrorKind::ConnectionRefused));
        assert!(!has_io_kind(&e, std::io::ErrorKind::TimedOut));
        assert!(error_chain(&e).starts_with("outer: "));
    }
}
