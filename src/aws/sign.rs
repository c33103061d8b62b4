//! SigV4 signing of one outgoing X-Ray request, in place.
//!
//! Owns the signing settings for service `xray` (signature in headers, session token signed,
//! every header the request carries signed except the SDK's default exclusions such as
//! `user-agent`). It talks to nothing: credentials and time come in as arguments.
//! It must never change the request other than adding the signing headers, because any byte
//! altered after signing breaks the signature.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Request;

/// The SigV4 service name of the X-Ray API.
pub(crate) const SERVICE: &str = "xray";

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// A header value is not visible ASCII, so it has no canonical form.
    #[error("header `{name}` has a value that cannot be signed")]
    HeaderValue {
        /// The offending header.
        name: HeaderName,
    },
    /// The signing parameters were incomplete.
    #[error("incomplete signing parameters")]
    Params(#[from] aws_sigv4::sign::v4::signing_params::BuildError),
    /// The signer refused the request.
    #[error("SigV4 signing failed")]
    Signing(#[from] aws_sigv4::http_request::SigningError),
    /// The signer produced a header (e.g. a session token) that is not a valid header value.
    #[error("signing produced an invalid `{name}` header")]
    Output {
        /// The header that could not be set.
        name: &'static str,
    },
}

/// Signs `request` for X-Ray in `region` at `time`, adding `authorization`, `x-amz-date` and,
/// when the credentials carry one, `x-amz-security-token`.
pub(crate) fn sign_request(
    request: &mut Request<Bytes>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), SignError> {
    let identity: Identity = credentials.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = signable_headers(request)?;
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.uri().to_string(),
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    let (new_headers, _query) = instructions.into_parts();
    for header in new_headers {
        let name = header.name();
        let invalid = || SignError::Output { name };
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| invalid())?;
        value.set_sensitive(header.sensitive());
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

/// The request's headers as string pairs; a value that is not visible ASCII is an error.
fn signable_headers(request: &Request<Bytes>) -> Result<Vec<(&str, &str)>, SignError> {
    request
        .headers()
        .iter()
        .map(|(name, value)| match value.to_str() {
            Ok(value) => Ok((name.as_str(), value)),
            Err(_) => Err(SignError::HeaderValue { name: name.clone() }),
        })
        .collect()
}
