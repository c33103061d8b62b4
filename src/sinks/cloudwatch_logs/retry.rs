//! What the CloudWatch Logs sink does after a failed call: create, bisect, wait, or stop.
//!
//! The shared [`classify`](crate::sinks::classify) decides retry-or-not for any AWS call; this
//! file adds the codes CloudWatch Logs gives a meaning of its own (a missing group or stream, a
//! resource someone else already created, a refused batch worth bisecting) and nothing else.
//! The decision is pure so every code is unit-tested. It never sleeps and never counts.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::pipeline::retry::Retry;
use crate::sinks::classify::{classify, classify_status, is_credential_error, Verdict};

/// The next step after a failed CloudWatch Logs call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `ResourceNotFoundException`: the group or the stream is missing; create it, then retry.
    Create,
    /// The service already has it: `ResourceAlreadyExistsException` (another call created the
    /// group or stream first) or the legacy `DataAlreadyAcceptedException`. Success.
    AlreadyDone,
    /// The request itself is refused (`InvalidParameterException`, any other 4xx that a retry
    /// cannot fix): bisect a batch; give up on a single event or a setup call.
    Refused,
    /// Credentials are missing, expired or lack a permission: warn, then wait and retry.
    Credentials,
    /// Throttling, 5xx, timeouts, connection errors: wait and retry.
    Retry,
}

/// A failed call, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What to do next.
    pub action: Action,
    /// The shared verdict (its `detail` goes in log lines).
    pub verdict: Verdict,
}

/// Judges any SDK error from a CloudWatch Logs call.
pub fn judge<E>(error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let verdict = classify(error);
    let action = match error {
        SdkError::ServiceError(service) => action_for(
            service.raw().status().as_u16(),
            service.err().code().unwrap_or(""),
        ),
        // The call never left: no credentials could be loaded (none in the chain, an IMDS or
        // SSO failure). Someone must act, yet they may appear at any moment.
        _ if caused_by_credentials(error) => Action::Credentials,
        // No answer, or an answer that could not be read: all of these may work next time.
        _ if verdict.retry == Retry::Yes => Action::Retry,
        _ => Action::Refused,
    };
    Failure { action, verdict }
}

/// True when a credentials provider failure is somewhere in the error's causes.
fn caused_by_credentials(error: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<CredentialsError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// HTTP status and error code to the next step.
pub fn action_for(status: u16, code: &str) -> Action {
    match code {
        "ResourceNotFoundException" => Action::Create,
        "ResourceAlreadyExistsException" | "DataAlreadyAcceptedException" => Action::AlreadyDone,
        // Legacy sequence tokens (never sent by us), a concurrent change to the same resource,
        // an account quota that may be raised or freed: waiting can fix all of them.
        "InvalidSequenceTokenException"
        | "OperationAbortedException"
        | "LimitExceededException"
        | "ServiceQuotaExceededException"
        | "ServiceUnavailableException"
        | "ThrottlingException" => Action::Retry,
        _ if is_credential_error(status, code) => Action::Credentials,
        _ => match classify_status(status, Some(code)).retry {
            Retry::Yes => Action::Retry,
            Retry::No => Action::Refused,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_resources_are_created_and_races_are_success() {
        assert_eq!(action_for(400, "ResourceNotFoundException"), Action::Create);
        assert_eq!(
            action_for(400, "ResourceAlreadyExistsException"),
            Action::AlreadyDone
        );
        assert_eq!(
            action_for(400, "DataAlreadyAcceptedException"),
            Action::AlreadyDone
        );
    }

    #[test]
    fn a_refused_batch_is_bisected() {
        assert_eq!(
            action_for(400, "InvalidParameterException"),
            Action::Refused
        );
        assert_eq!(action_for(400, "SerializationException"), Action::Refused);
        assert_eq!(action_for(413, ""), Action::Refused);
    }

    #[test]
    fn throttling_outages_and_legacy_codes_retry() {
        for code in [
            "ThrottlingException",
            "ServiceUnavailableException",
            "InvalidSequenceTokenException",
            "OperationAbortedException",
            "LimitExceededException",
        ] {
            assert_eq!(action_for(400, code), Action::Retry, "{code}");
        }
        assert_eq!(action_for(500, "InternalFailure"), Action::Retry);
        assert_eq!(action_for(503, ""), Action::Retry);
        assert_eq!(action_for(429, ""), Action::Retry);
    }

    #[test]
    fn credentials_that_cannot_be_loaded_are_a_credentials_failure() {
        #[derive(Debug)]
        struct Wrapper(CredentialsError);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "dispatch failure")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrapper(CredentialsError::not_loaded("no credentials in the chain"));
        assert!(caused_by_credentials(&e));
        assert!(!caused_by_credentials(&std::io::Error::other("reset")));
    }

    #[test]
    fn credential_errors_warn_and_retry() {
        for code in [
            "UnrecognizedClientException",
            "ExpiredTokenException",
            "AccessDeniedException",
            "InvalidSignatureException",
        ] {
            assert_eq!(action_for(400, code), Action::Credentials, "{code}");
        }
        assert_eq!(action_for(403, ""), Action::Credentials);
    }
}
