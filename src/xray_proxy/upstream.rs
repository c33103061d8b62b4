//! The proxy's way out: the parsed X-Ray endpoint and the HTTP client that reaches it.
//!
//! Owns endpoint validation (scheme, host, base path, the `Host` header value) and the hyper
//! client (rustls with the system's root certificates plus the agent's extra ones — `[aws]
//! ca_bundle` / `AWS_CA_BUNDLE`, as for its own AWS calls —, plain `http` allowed for local
//! emulators, optionally tunnelled through an HTTP `CONNECT` proxy).
//! It must never sign, retry or time out on its own: the caller signs and bounds each exchange.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::OnceCell;

use super::ProxyError;

/// Budget for the TCP connect alone (the whole exchange has its own, larger budget).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an unused upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The X-Ray endpoint, validated once at startup.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    scheme: Scheme,
    /// `host[:port]`, the port only when it is not the scheme's default.
    authority: String,
    /// The same, ready to be the `Host` header.
    host: HeaderValue,
    /// The endpoint's path without a trailing `/` (empty for most endpoints).
    base_path: String,
}

impl Endpoint {
    /// Validates `uri`: absolute `http`/`https`, a host, no user info, no query.
    pub(super) fn parse(uri: &Uri) -> Result<Self, ProxyError> {
        let invalid = |reason| ProxyError::InvalidEndpoint {
            endpoint: uri.to_string(),
            reason,
        };
        let scheme = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => scheme.clone(),
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("a host is required"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info is not allowed"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query string is not allowed"));
        }
        let host_str = host_header(&scheme, authority.host(), authority.port_u16());
        let host =
            HeaderValue::from_str(&host_str).map_err(|_| invalid("the host is not valid"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority: host_str,
            host,
            base_path,
        })
    }

    /// The `Host` header value for requests to this endpoint.
    pub(super) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The absolute URI for a client request's path and query, under the base path.
    pub(super) fn uri_for(
        &self,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, http::Error> {
        let tail = path_and_query.map_or("/", PathAndQuery::as_str);
        let path = format!("{}{}", self.base_path, tail);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.as_str())
            .path_and_query(path)
            .build()
    }
}

/// `host` or `host:port`, leaving out the scheme's default port as HTTP clients do.
fn host_header(scheme: &Scheme, host: &str, port: Option<u16>) -> String {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    match port {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    }
}

/// The pooled HTTP client to the endpoint, direct or through a `CONNECT` proxy, built on the
/// first request: loading and parsing the system's root certificates costs memory and time
/// that an agent whose applications never ask for sampling rules should not pay.
#[derive(Debug, Clone)]
pub(super) struct UpstreamClient {
    /// The validated `CONNECT` tunnel, when going through a proxy.
    tunnel: Option<Tunnel<HttpConnector>>,
    /// Extra trusted roots (PEM), already checked to hold usable certificates.
    extra_roots: Option<Arc<[u8]>>,
    /// The client, once built.
    client: Arc<OnceCell<Pooled>>,
}

/// The built client, direct or tunnelled.
#[derive(Debug, Clone)]
enum Pooled {
    /// Straight to the endpoint.
    Direct(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// Through an HTTP proxy, with a `CONNECT` tunnel per connection.
    Tunneled(Client<HttpsConnector<Tunnel<HttpConnector>>, Full<Bytes>>),
}

/// Why an exchange with the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum UpstreamError {
    /// No trusted root certificate could be loaded from the system store.
    #[error("no TLS root certificates found (install ca-certificates or set SSL_CERT_FILE)")]
    TlsRoots(#[source] std::io::Error),
    /// The endpoint could not be reached or broke the exchange.
    #[error(transparent)]
    Exchange(#[from] hyper_util::client::legacy::Error),
}

impl UpstreamClient {
    /// Validates the proxy address; the client itself is built on first use.
    pub(super) fn new(
        proxy: Option<&Uri>,
        extra_roots: Option<Arc<[u8]>>,
    ) -> Result<Self, ProxyError> {
        Ok(Self {
            tunnel: proxy.map(tunnel).transpose()?,
            extra_roots,
            client: Arc::new(OnceCell::new()),
        })
    }

    /// Builds the client; loads the system's root certificates once.
    fn build(&self) -> Result<Pooled, UpstreamError> {
        let tls = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(self.extra_roots.as_deref())?)
            .https_or_http()
            .enable_http1();
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new());
        Ok(match &self.tunnel {
            None => Pooled::Direct(builder.build(tls.wrap_connector(tcp_connector()))),
            Some(tunnel) => Pooled::Tunneled(builder.build(tls.wrap_connector(tunnel.clone()))),
        })
    }

    /// Sends one request and returns the response head with its body still streaming.
    pub(super) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                // Reading the certificate store is file I/O: off the runtime's threads.
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.build())
                    .await
                    .map_err(|e| UpstreamError::TlsRoots(std::io::Error::other(e)))?
            })
            .await?;
        Ok(match client {
            Pooled::Direct(client) => client.request(request).await?,
            Pooled::Tunneled(client) => client.request(request).await?,
        })
    }
}

/// The TLS settings: the platform's trusted roots (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`)
/// and `extra` ones. A system store that cannot be read is fine when there are extra roots (a
/// minimal image that trusts only its private CA); with neither there is nothing to trust.
fn tls_config(extra: Option<&[u8]>) -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    let mut extra_added = 0;
    for cert in CertificateDer::pem_slice_iter(extra.unwrap_or_default()).flatten() {
        if roots.add(cert).is_ok() {
            extra_added += 1;
        }
    }
    if added + extra_added == 0 {
        let reason = native.errors.first().map_or_else(
            || "the system's certificate store is empty".to_string(),
            ToString::to_string,
        );
        return Err(UpstreamError::TlsRoots(std::io::Error::other(reason)));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::TlsRoots(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A TCP connector that also accepts `https` URIs (TLS is layered on top of it).
fn tcp_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector
}

/// A `CONNECT` tunnel through `proxy`, with basic auth when the URI carries `user:pass@`.
fn tunnel(proxy: &Uri) -> Result<Tunnel<HttpConnector>, ProxyError> {
    let authority = proxy.authority().map(|a| a.as_str()).unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let invalid = |reason| ProxyError::InvalidProxy {
        proxy: format!("http://{host_port}"),
        reason,
    };
    if proxy.scheme() != Some(&Scheme::HTTP) {
        return Err(invalid("only http:// proxies are supported"));
    }
    if host_port.is_empty() {
        return Err(invalid("a host is required"));
    }
    let target: Uri = format!("http://{host_port}")
        .parse()
        .map_err(|_| invalid("the host is not valid"))?;
    let tunnel = Tunnel::new(target, tcp_connector());
    match userinfo {
        None => Ok(tunnel),
        Some(userinfo) => {
            let basic = format!("Basic {}", aws_smithy_types::base64::encode(userinfo));
            let value = HeaderValue::from_str(&basic).map_err(|_| invalid("bad user info"))?;
            Ok(tunnel.with_auth(value))
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn endpoint(uri: &str) -> Result<Endpoint, ProxyError> {
        Endpoint::parse(&uri.parse().expect("test uri"))
    }

    #[test]
    fn host_drops_default_ports_only() {
        let host = |uri| endpoint(uri).expect("valid").host().clone();
        assert_eq!(
            host("https://xray.us-east-1.amazonaws.com"),
            "xray.us-east-1.amazonaws.com"
        );
        assert_eq!(host("https://xray.example:443"), "xray.example");
        assert_eq!(host("http://127.0.0.1:4566"), "127.0.0.1:4566");
        assert_eq!(host("http://localhost:80/"), "localhost");
        assert_eq!(host("https://localhost:80"), "localhost:80");
    }

    #[test]
    fn uri_keeps_base_path_and_query() {
        let pq = |s: &str| s.parse::<PathAndQuery>().expect("test path");
        let e = endpoint("http://127.0.0.1:4566/xray/").expect("valid");
        let uri = e.uri_for(Some(&pq("/GetSamplingRules?x=1"))).expect("uri");
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:4566/xray/GetSamplingRules?x=1"
        );
        let e = endpoint("https://xray.us-east-1.amazonaws.com").expect("valid");
        let uri = e.uri_for(Some(&pq("/SamplingTargets"))).expect("uri");
        assert_eq!(
            uri.to_string(),
            "https://xray.us-east-1.amazonaws.com/SamplingTargets"
        );
        assert_eq!(e.uri_for(None).expect("uri").path(), "/");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "xray.us-east-1.amazonaws.com",
            "ftp://x",
            "/path",
            "http://u:p@h",
            "http://h/?q",
        ] {
            assert!(endpoint(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn proxies_must_be_plain_http() {
        let proxy = |s: &str| tunnel(&s.parse().expect("test uri"));
        assert!(proxy("http://127.0.0.1:3128").is_ok());
        assert!(proxy("http://user:secret@127.0.0.1:3128").is_ok());
        assert!(proxy("https://127.0.0.1:3128").is_err());
        let error = proxy("socks5://user:secret@h:1")
            .expect_err("refused")
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }
}
