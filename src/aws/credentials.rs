//! The credentials cache of the X-Ray calls cloudtail signs itself (the sampling proxy and
//! `PutTraceSegments`): one refresh at a time, ahead of expiry.
//!
//! The provider the agent hands over may be a bare chain (aws-config's `credentials_provider()`
//! is not cached: the SDK clients cache identities in their own runtime), and asking IMDS, the
//! ECS endpoint or STS once per sampling request (or once per batch) would be slow and get throttled. So this file
//! keeps the last credentials and asks the provider again only when they are within
//! [`REFRESH_BEFORE_EXPIRY`] of their expiry, or [`NO_EXPIRY_TTL`] old when they carry none.
//! It talks to the provider only. It must never hand out credentials past their expiry, nor
//! let concurrent requests stampede the provider (refreshes are serialized by one lock).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::sync::Mutex;

/// Refresh this long before the credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Keep credentials that carry no expiry this long before asking again.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
struct Entry {
    credentials: Credentials,
    refresh_at: SystemTime,
}

/// The agent's provider behind a small refresh-ahead cache.
#[derive(Debug)]
pub(crate) struct CachedCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Entry>>,
}

impl CachedCredentials {
    /// Wraps `provider`; nothing is asked until the first request.
    pub(crate) fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            cached: Mutex::new(None),
        }
    }

    /// Current credentials: the cached ones while fresh, else the provider's. When a refresh
    /// fails, the old credentials are still used as long as they have not expired.
    pub(crate) async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(entry) = cached.as_ref().filter(|entry| now < entry.refresh_at) {
            return Ok(entry.credentials.clone());
        }
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                let refresh_at = refresh_at(&credentials, now);
                *cached = Some(Entry {
                    credentials: credentials.clone(),
                    refresh_at,
                });
                Ok(credentials)
            }
            Err(error) => match cached.as_ref().filter(|e| !is_expired(&e.credentials, now)) {
                Some(entry) => {
                    tracing::warn!(error = %error, "Credentials refresh failed; using the current ones until they expire.");
                    Ok(entry.credentials.clone())
                }
                None => Err(error),
            },
        }
    }
}

/// When to ask the provider again for `credentials` fetched at `now`.
fn refresh_at(credentials: &Credentials, now: SystemTime) -> SystemTime {
    match credentials.expiry() {
        Some(expiry) => expiry
            .checked_sub(REFRESH_BEFORE_EXPIRY)
            .unwrap_or(now)
            .min(now + NO_EXPIRY_TTL),
        None => now + NO_EXPIRY_TTL,
    }
}

/// True once `credentials` are past their expiry (never for credentials without one).
fn is_expired(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_some_and(|expiry| expiry <= now)
}

#[cfg(test)]
mod unit {
    use super::*;

    fn expiring_in(now: SystemTime, ttl: Option<Duration>) -> Credentials {
        Credentials::new("AKID", "SECRET", None, ttl.map(|ttl| now + ttl), "test")
    }

    #[test]
    fn refresh_comes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hour = expiring_in(now, Some(Duration::from_secs(3600)));
        assert_eq!(refresh_at(&hour, now), now + NO_EXPIRY_TTL);
        let ten_min = expiring_in(now, Some(Duration::from_secs(600)));
        assert_eq!(refresh_at(&ten_min, now), now + Duration::from_secs(300));
        let one_min = expiring_in(now, Some(Duration::from_secs(60)));
        assert!(
            refresh_at(&one_min, now) <= now,
            "near-expiry credentials are never fresh"
        );
        assert_eq!(
            refresh_at(&expiring_in(now, None), now),
            now + NO_EXPIRY_TTL
        );
    }

    #[test]
    fn expiry_is_strict() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(is_expired(&expiring_in(now, Some(Duration::ZERO)), now));
        assert!(!is_expired(
            &expiring_in(now, Some(Duration::from_secs(1))),
            now
        ));
        assert!(!is_expired(&expiring_in(now, None), now));
    }
}
