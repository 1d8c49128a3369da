//! The allow-list of `http`: which URLs a request may target.
//!
//! Only `https://<IP of a pod in this run's latest list>:<site port>`, the path
//! then checked against the run's [`Grants`](crate::grants::Grants),
//! with the IP written canonically (the URL parser also reads `2130706433`,
//! `0x7f.1` or `[::ffff:127.0.0.1]` as IPs; those are refused so that what the log
//! shows is what was meant).

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::caps::PodAddresses;
use crate::site::Site;

/// What the site allows `http` to do.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub port: u16,
    pub max_response_bytes: usize,
    pub max_request_bytes: usize,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

impl HttpPolicy {
    pub fn from_site(site: &Site) -> Self {
        HttpPolicy {
            port: site.cluster.port,
            max_response_bytes: 1 << 20,
            max_request_bytes: 64 << 10,
            timeout: Duration::from_secs(30),
            max_concurrency: 64,
        }
    }

    /// Checks `url` against the policy and the current pod addresses. `Err` is the
    /// rule that denies it, for the guest and the log.
    pub fn check(&self, raw: &str, pods: &PodAddresses) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        if url.scheme() != "https" {
            return Err(format!("scheme {:?} not allowed: only https", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        let ip: IpAddr = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
            Some(url::Host::Domain(d)) => {
                return Err(format!(
                    "host {d:?} is not a pod IP: names are not resolved"
                ));
            }
            None => return Err("no host".into()),
        };
        // The URL parser reads `2130706433`, `0x7f.1` or `[::ffff:127.0.0.1]` as an IP;
        // only the canonical spelling is accepted, so what the log shows is what was meant.
        let written = raw_host(raw);
        let canonical = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        if written != canonical {
            return Err(format!(
                "host {written:?} is not written as a canonical IP address ({canonical})"
            ));
        }
        if ip.to_canonical() != ip || !pods.contains(&ip) {
            return Err(format!(
                "{ip} is not the IP of a pod in the latest pod list"
            ));
        }
        if url.port_or_known_default() != Some(self.port) {
            return Err(format!(
                "port {} not allowed: only the site's pod port {}",
                url.port_or_known_default().unwrap_or(0),
                self.port
            ));
        }
        if url.fragment().is_some() {
            return Err("fragments are not allowed".into());
        }
        Ok(url)
    }
}

/// The host part of `raw` as written (between `//` and the next `/`, `?`, `#`,
/// without userinfo and port).
fn raw_host(raw: &str) -> &str {
    let rest = raw.split_once("//").map_or(raw, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HttpPolicy {
        HttpPolicy {
            port: 4444,
            max_response_bytes: 1024,
            max_request_bytes: 1024,
            timeout: Duration::from_secs(1),
            max_concurrency: 4,
        }
    }

    fn pods() -> PodAddresses {
        let pods = PodAddresses::default();
        pods.replace(vec!["127.1.2.3".parse().unwrap()]);
        pods
    }

    #[test]
    fn allows_a_listed_pod_on_the_site_port_and_path() {
        for url in [
            "https://127.1.2.3:4444/cluster/v1/key",
            "https://127.1.2.3:4444/cluster/v1/key/propose",
        ] {
            assert!(policy().check(url, &pods()).is_ok(), "{url}");
        }
    }

    #[test]
    fn denies_everything_else_with_the_rule() {
        let cases = [
            ("http://127.1.2.3:4444/cluster/v1/key", "scheme"),
            ("https://127.1.2.3:4445/cluster/v1/key", "port 4445"),
            ("https://127.1.2.3/cluster/v1/key", "port 443"),
            (
                "https://127.0.0.1:4444/cluster/v1/key",
                "not the IP of a pod",
            ),
            ("https://u:p@127.1.2.3:4444/cluster/v1/key", "credentials"),
            ("https://2130838019:4444/cluster/v1/key", "canonical"),
            ("https://0x7f.1.2.3:4444/cluster/v1/key", "canonical"),
            ("https://127.001.2.3:4444/cluster/v1/key", "canonical"),
            (
                "https://[::ffff:127.1.2.3]:4444/cluster/v1/key",
                "not the IP of a pod",
            ),
            (
                "https://pod.local:4444/cluster/v1/key",
                "names are not resolved",
            ),
            ("not a url", "not a valid URL"),
        ];
        for (url, rule) in cases {
            let err = policy().check(url, &pods()).unwrap_err();
            assert!(err.contains(rule), "{url}: {err}");
        }
    }

    #[test]
    fn raw_host_reads_the_written_host() {
        assert_eq!(raw_host("https://a@1.2.3.4:5/x"), "1.2.3.4");
        assert_eq!(raw_host("https://[::1]:5/x"), "[::1]");
        assert_eq!(raw_host("https://0x7f.1?x"), "0x7f.1");
    }
}
