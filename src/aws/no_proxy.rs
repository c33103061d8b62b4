//! Which proxy, if any, a hand-made AWS call goes through: `-p`, else `HTTPS_PROXY` /
//! `HTTP_PROXY` by the endpoint's scheme, unless `NO_PROXY` names the endpoint's host — the
//! rules the SDK's own client follows, applied to the calls cloudtail makes itself (the X-Ray
//! sampling proxy), so both kinds of call leave the host the same way.

/// The proxy for `endpoint` (`scheme://host[:port]/...`): `explicit` (`-p`) wins, else the
/// environment read through `env`; `None` when none is set or `NO_PROXY` excludes the host.
pub fn proxy_for(
    explicit: Option<&str>,
    endpoint: &http::Uri,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let host = endpoint.host()?;
    let var = |upper: &str| {
        env(upper)
            .or_else(|| env(&upper.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let proxy = match explicit {
        Some(address) => address.to_owned(),
        None if endpoint.scheme_str() == Some("https") => var("HTTPS_PROXY")?,
        None => var("HTTP_PROXY")?,
    };
    let default_port = if endpoint.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = endpoint.port_u16().unwrap_or(default_port);
    let excluded = var("NO_PROXY").is_some_and(|list| excludes(&list, host, port));
    (!excluded).then_some(proxy)
}

/// Whether a `NO_PROXY` list names `host`: `*`; an exact host or IP; a domain (`example.com`
/// or `.example.com`) matching itself and its subdomains; an entry with `:port` only for that
/// port. Case-insensitive, as host names are.
fn excludes(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('.').to_ascii_lowercase();
            host == name || host.ends_with(&format!(".{name}"))
        })
}

/// `host:port` → (`host`, port); a bare IPv6 address or a name without a port stays whole.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn uri(text: &str) -> http::Uri {
        text.parse().expect("test uri")
    }

    #[test]
    fn explicit_proxy_wins_over_the_environment() {
        let e = env(&[("HTTPS_PROXY", "http://env:1")]);
        let endpoint = uri("https://xray.us-east-1.amazonaws.com");
        assert_eq!(
            proxy_for(Some("http://p:3128"), &endpoint, &e).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            proxy_for(None, &endpoint, &e).as_deref(),
            Some("http://env:1")
        );
    }

    #[test]
    fn the_scheme_picks_the_variable_and_lowercase_names_count() {
        let e = env(&[("https_proxy", "http://s:1"), ("HTTP_PROXY", "http://h:1")]);
        assert_eq!(
            proxy_for(None, &uri("https://a.example"), &e).as_deref(),
            Some("http://s:1")
        );
        assert_eq!(
            proxy_for(None, &uri("http://a.example"), &e).as_deref(),
            Some("http://h:1")
        );
        assert_eq!(proxy_for(None, &uri("http://a.example"), env(&[])), None);
    }

    #[test]
    fn no_proxy_excludes_hosts_domains_ports_and_everything() {
        let endpoint = uri("https://xray.us-east-1.amazonaws.com");
        let with = |list: &'static str| {
            let pairs: &'static [(&str, &str)] = Box::leak(
                vec![("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", list)].into_boxed_slice(),
            );
            proxy_for(None, &endpoint, env(pairs))
        };
        assert_eq!(with("amazonaws.com"), None);
        assert_eq!(with(".amazonaws.com"), None);
        assert_eq!(with("localhost, XRAY.us-east-1.amazonaws.com"), None);
        assert_eq!(with("*"), None);
        assert_eq!(with("amazonaws.com:8443").as_deref(), Some("http://p:1"));
        assert_eq!(with("amazonaws.com:443"), None);
        assert_eq!(with("mazonaws.com").as_deref(), Some("http://p:1"));
        assert_eq!(with("").as_deref(), Some("http://p:1"));
    }

    #[test]
    fn no_proxy_matches_ip_addresses_and_applies_to_dash_p() {
        let e = env(&[("NO_PROXY", "127.0.0.1,[::1]:4566")]);
        assert_eq!(
            proxy_for(Some("p:1"), &uri("http://127.0.0.1:4566"), &e),
            None
        );
        assert_eq!(proxy_for(Some("p:1"), &uri("http://[::1]:4566"), &e), None);
        assert_eq!(
            proxy_for(Some("p:1"), &uri("http://[::1]:9"), &e).as_deref(),
            Some("p:1")
        );
    }
}
