//! The network guard: which hosts and addresses outbound requests may reach.
//!
//! Every outbound request made through [`crate::GuardedClient`] is checked twice:
//!
//! * before anything is sent, the URL's scheme and host are checked; a literal IP address
//!   (including the hex/decimal/octal IPv4 spellings the URL parser normalises, and IPv6 forms
//!   that embed an IPv4 address) is classified directly, and known cloud metadata host names are
//!   refused by name;
//! * host names are resolved by [`GuardedResolver`], the DNS resolver installed in the HTTP
//!   client, which drops every refused address from the answer. The connection can therefore
//!   only be made to an address that passed the check (there is no gap between "check" and
//!   "connect" for DNS rebinding to exploit).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

use crate::error::NetError;

/// Default response cap for action webhooks (50 KB).
pub const WEBHOOK_MAX_RESPONSE_BYTES: usize = 50 * 1024;
/// Default response cap for URL ingestion (5 MB).
pub const URL_FETCH_MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;
/// Hard upper bound on redirect hops, whatever the policy says.
pub const MAX_REDIRECT_HOPS: usize = 3;

/// Host names of cloud metadata services, refused by name unless explicitly allowed.
pub const METADATA_HOST_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.platformequinix.com",
    "metadata.packet.net",
];

/// What to do when a response body is larger than [`NetPolicy::max_response_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizePolicy {
    /// Keep the first `max_response_bytes` bytes and set [`crate::FetchedResponse::truncated`].
    #[default]
    Truncate,
    /// Fail with [`NetError::TooLarge`].
    Error,
}

/// Outbound network policy of a [`crate::GuardedClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPolicy {
    /// Allow loopback, private, link-local, CGNAT, documentation and other non-public
    /// addresses and the metadata host names. Only for development.
    pub allow_private: bool,
    /// Exceptions to the guard, for development or known internal services. Each entry is one of:
    /// a host name (`localhost`, `api.internal`), a wildcard suffix (`*.internal.example`),
    /// an IP address (`127.0.0.1`, `::1`) or a CIDR block (`10.1.0.0/16`). A URL whose host name
    /// matches a name entry may connect to whatever that name resolves to; an address that
    /// matches an IP/CIDR entry is allowed whatever name led to it.
    pub allowed_hosts: Vec<String>,
    /// Maximum number of response body bytes kept (the body is streamed and reading stops there).
    pub max_response_bytes: usize,
    /// What to do with a body over `max_response_bytes`.
    pub oversize: OversizePolicy,
    /// Timeout of one attempt: connect, send, and read the whole (capped) response.
    pub timeout: Duration,
    /// Timeout of establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Retries after the first attempt on connection errors, 5xx and 429 (never on other 4xx).
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub retry_base_delay: Duration,
    /// Upper bound of one retry delay (also bounds a server's `Retry-After`).
    pub retry_max_delay: Duration,
    /// Redirect hops followed (each hop re-checked by the guard); capped at [`MAX_REDIRECT_HOPS`].
    /// `0` disables redirects: a 3xx answer is then [`NetError::TooManyRedirects`].
    pub max_redirects: usize,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
}

impl Default for NetPolicy {
    /// The webhook policy ([`NetPolicy::webhook`]).
    fn default() -> Self {
        Self::webhook()
    }
}

impl NetPolicy {
    /// Policy for action webhooks: guard on, 50 KB cap (truncated), 15 s timeout, 5 s connect
    /// timeout, 2 retries starting at 250 ms, up to 3 redirects.
    pub fn webhook() -> Self {
        Self {
            allow_private: false,
            allowed_hosts: Vec::new(),
            max_response_bytes: WEBHOOK_MAX_RESPONSE_BYTES,
            oversize: OversizePolicy::Truncate,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_retries: 2,
            retry_base_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(5),
            max_redirects: MAX_REDIRECT_HOPS,
            user_agent: concat!("cortex/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Policy for knowledge URL ingestion: like [`NetPolicy::webhook`] but with a 5 MB cap that
    /// is an error when exceeded and a 30 s timeout.
    pub fn url_fetch() -> Self {
        Self {
            max_response_bytes: URL_FETCH_MAX_RESPONSE_BYTES,
            oversize: OversizePolicy::Error,
            timeout: Duration::from_secs(30),
            ..Self::webhook()
        }
    }

    /// Builder-style: allow non-public addresses (development only).
    pub fn with_allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Builder-style: add one exception (see [`NetPolicy::allowed_hosts`]).
    pub fn with_allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Checks the policy's exception list, returning the first malformed entry.
    pub fn validate(&self) -> Result<(), NetError> {
        for entry in &self.allowed_hosts {
            parse_allow_entry(entry)?;
        }
        Ok(())
    }
}

/// One parsed entry of [`NetPolicy::allowed_hosts`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowEntry {
    Name(String),
    Suffix(String),
    Net(IpNet),
}

fn parse_allow_entry(entry: &str) -> Result<AllowEntry, NetError> {
    let trimmed = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    let invalid = || NetError::InvalidPolicy(format!("invalid allowed_hosts entry {entry:?}"));
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let unbracketed = trimmed.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(AllowEntry::Net(IpNet::from(ip)));
    }
    if trimmed.contains('/') {
        return trimmed
            .parse::<IpNet>()
            .map(|net| AllowEntry::Net(net.trunc()))
            .map_err(|_| invalid());
    }
    if let Some(suffix) = trimmed.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err(invalid());
        }
        return Ok(AllowEntry::Suffix(format!(".{suffix}")));
    }
    if trimmed.contains('*') || trimmed.contains(':') {
        return Err(invalid());
    }
    Ok(AllowEntry::Name(trimmed))
}

/// The compiled guard shared by the client and its resolver.
#[derive(Clone)]
pub struct NetGuard {
    allow_private: bool,
    entries: Arc<[AllowEntry]>,
}

impl fmt::Debug for NetGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetGuard")
            .field("allow_private", &self.allow_private)
            .field("entries", &self.entries)
            .finish()
    }
}

impl NetGuard {
    /// Compiles the guard part of a policy.
    pub fn new(policy: &NetPolicy) -> Result<Self, NetError> {
        let entries = policy
            .allowed_hosts
            .iter()
            .map(|e| parse_allow_entry(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allow_private: policy.allow_private,
            entries: entries.into(),
        })
    }

    /// Whether the host name is listed as an exception (exact or wildcard suffix).
    pub fn host_name_allowed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.entries.iter().any(|e| match e {
            AllowEntry::Name(name) => *name == host,
            AllowEntry::Suffix(suffix) => host.ends_with(suffix.as_str()),
            AllowEntry::Net(_) => false,
        })
    }

    fn ip_listed(&self, ip: IpAddr) -> bool {
        let canonical = canonical_ip(ip);
        self.entries.iter().any(|e| match e {
            AllowEntry::Net(net) => net.contains(&ip) || net.contains(&canonical),
            _ => false,
        })
    }

    /// Checks one address; `Err` carries the reason it is refused.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allow_private || self.ip_listed(ip) {
            return Ok(());
        }
        match blocked_reason(ip) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Checks a host name before resolution: metadata service names are refused by name.
    pub fn check_host_name(&self, host: &str) -> Result<(), NetError> {
        if self.allow_private || self.host_name_allowed(host) {
            return Ok(());
        }
        let name = normalize_host(host);
        if METADATA_HOST_NAMES.contains(&name.as_str()) {
            return Err(NetError::Blocked {
                host: host.to_string(),
                reason: "cloud metadata host name".to_string(),
            });
        }
        Ok(())
    }

    /// Checks a URL before any request: scheme, credentials-free host, literal IP addresses and
    /// metadata host names. Host names that pass are checked again, address by address, when
    /// they are resolved for the connection.
    pub fn check_url(&self, url: &Url) -> Result<(), NetError> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(NetError::InvalidUrl(format!(
                    "scheme {other:?} is not allowed (only http and https)"
                )));
            }
        }
        let host = url
            .host()
            .ok_or_else(|| NetError::InvalidUrl(format!("URL {url} has no host")))?;
        let ip = match host {
            Host::Ipv4(v4) => IpAddr::V4(v4),
            Host::Ipv6(v6) => IpAddr::V6(v6),
            Host::Domain(name) => {
                // A domain the URL parser did not turn into an address may still parse as one.
                match name.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => return self.check_host_name(name),
                }
            }
        };
        self.check_ip(ip).map_err(|reason| NetError::Blocked {
            host: url.host_str().unwrap_or_default().to_string(),
            reason: reason.to_string(),
        })
    }

    /// Filters resolved addresses for `host`: all of them when the host name is an exception,
    /// otherwise those passing [`NetGuard::check_ip`]. None left is [`NetError::Blocked`].
    pub fn filter_addrs(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, NetError> {
        let name_allowed = self.allow_private || self.host_name_allowed(host);
        let mut kept = Vec::new();
        let mut first_reason: Option<(IpAddr, &'static str)> = None;
        for addr in addrs {
            if name_allowed {
                kept.push(addr);
                continue;
            }
            match self.check_ip(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(reason) => {
                    tracing::debug!(host, ip = %addr.ip(), reason, "resolved address refused");
                    first_reason.get_or_insert((addr.ip(), reason));
                }
            }
        }
        if kept.is_empty() {
            let reason = match first_reason {
                Some((ip, reason)) => format!("resolves to {ip} ({reason})"),
                None => "resolves to no address".to_string(),
            };
            return Err(NetError::Blocked {
                host: host.to_string(),
                reason,
            });
        }
        Ok(kept)
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), else itself.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(ip, IpAddr::V4),
    }
}

fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    // ::ffff:a.b.c.d (IPv4-mapped)
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible; excludes :: and ::1 which are handled as IPv6)
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 64:ff9b::a.b.c.d and 64:ff9b:1::/48 (NAT64)
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 2002:AABB:CCDD::/48 (6to4)
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Why an address is not a public unicast address, or `None` if it is one.
///
/// Covers loopback, RFC 1918 private, unique-local, link-local (including the
/// 169.254.169.254 metadata address), CGNAT, unspecified, "this network", multicast, broadcast,
/// reserved, benchmarking and documentation ranges, and every IPv6 form that embeds an IPv4
/// address (mapped, compatible, NAT64, 6to4) classified as that IPv4 address.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_reason_v4(v4),
        IpAddr::V6(v6) => blocked_reason_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn blocked_reason_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified / \"this network\" address"),
        ([10, 0, 0, 0], 8, "private address (10.0.0.0/8)"),
        (
            [100, 64, 0, 0],
            10,
            "carrier-grade NAT address (100.64.0.0/10)",
        ),
        ([127, 0, 0, 0], 8, "loopback address"),
        (
            [169, 254, 169, 254],
            32,
            "cloud metadata address (169.254.169.254)",
        ),
        ([169, 254, 0, 0], 16, "link-local address (169.254.0.0/16)"),
        ([172, 16, 0, 0], 12, "private address (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignment (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation address (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast address"),
        ([192, 168, 0, 0], 16, "private address (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking address (198.18.0.0/15)"),
        (
            [198, 51, 100, 0],
            24,
            "documentation address (198.51.100.0/24)",
        ),
        (
            [203, 0, 113, 0],
            24,
            "documentation address (203.0.113.0/24)",
        ),
        ([224, 0, 0, 0], 4, "multicast address"),
        ([255, 255, 255, 255], 32, "broadcast address"),
        ([240, 0, 0, 0], 4, "reserved address (240.0.0.0/4)"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn blocked_reason_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified address");
    }
    if ip.is_loopback() {
        return Some("loopback address");
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return blocked_reason_v4(v4).map(|_| "IPv6 form of a non-public IPv4 address");
    }
    let s = ip.segments();
    let checks: &[(u16, u16, &str)] = &[
        (0xfe00, 0xfc00, "unique local address (fc00::/7)"),
        (0xffc0, 0xfe80, "link-local address (fe80::/10)"),
        (0xffc0, 0xfec0, "site-local address (fec0::/10)"),
        (0xff00, 0xff00, "multicast address"),
    ];
    if let Some((_, _, reason)) = checks.iter().find(|(mask, net, _)| s[0] & mask == *net) {
        return Some(reason);
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation address (2001:db8::/32)");
    }
    if s[0] == 0x3fff && s[1] & 0xf000 == 0 {
        return Some("documentation address (3fff::/20)");
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some("Teredo address (2001::/32)");
    }
    if s[0] == 0x2001 && s[1] == 2 && s[2] == 0 {
        return Some("benchmarking address (2001:2::/48)");
    }
    if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        return Some("discard-only address (100::/64)");
    }
    if s[0] == 0 {
        return Some("reserved address (::/16)");
    }
    None
}

/// The reqwest DNS resolver that enforces the guard on every address the client connects to.
///
/// Names are resolved with the system resolver (through tokio), metadata host names are refused
/// before resolution, and refused addresses are dropped from the answer; if none is left the
/// lookup fails with [`NetError::Blocked`], which [`crate::GuardedClient`] reports as such.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: NetGuard,
}

impl GuardedResolver {
    /// A resolver enforcing `guard`.
    pub fn new(guard: NetGuard) -> Self {
        Self { guard }
    }

    /// Resolves `host` and returns only the addresses the guard allows.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, NetError> {
        self.guard.check_host_name(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.guard.filter_addrs(host, [SocketAddr::new(ip, 0)]);
        }
        let addrs = tokio::net::lookup_host((bare, 0))
            .await
            .map_err(|e| NetError::Dns {
                host: host.to_string(),
                message: e.to_string(),
            })?;
        self.guard.filter_addrs(host, addrs)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.resolve_checked(&host).await?;
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_non_public_addresses() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.5",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
        ] {
            assert!(blocked_reason(ip(s)).is_some(), "{s} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.253.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(blocked_reason(ip(s)), None, "{s} should pass");
        }
    }

    #[test]
    fn metadata_reason_is_specific() {
        assert_eq!(
            blocked_reason(ip("169.254.169.254")),
            Some("cloud metadata address (169.254.169.254)")
        );
    }

    #[test]
    fn exceptions_by_ip_cidr_and_name() {
        let policy = NetPolicy::webhook()
            .with_allowed_host("127.0.0.1")
            .with_allowed_host("10.1.0.0/16")
            .with_allowed_host("Internal.Example.")
            .with_allowed_host("*.svc.local");
        let guard = NetGuard::new(&policy).unwrap();
        assert!(guard.check_ip(ip("127.0.0.1")).is_ok());
        assert!(guard.check_ip(ip("::ffff:127.0.0.1")).is_ok());
        assert!(guard.check_ip(ip("127.0.0.2")).is_err());
        assert!(guard.check_ip(ip("10.1.200.3")).is_ok());
        assert!(guard.check_ip(ip("10.2.0.1")).is_err());
        assert!(guard.host_name_allowed("internal.example"));
        assert!(guard.host_name_allowed("a.b.svc.local"));
        assert!(!guard.host_name_allowed("svc.local"));
        assert!(!guard.host_name_allowed("evilinternal.example"));
    }

    #[test]
    fn malformed_exceptions_are_rejected() {
        for bad in ["", "10.0.0.0/99", "*.", "a*b.com", "*.*.x"] {
            let policy = NetPolicy::webhook().with_allowed_host(bad);
            assert!(
                matches!(policy.validate(), Err(NetError::InvalidPolicy(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn url_checks() {
        let guard = NetGuard::new(&NetPolicy::webhook()).unwrap();
        let check = |u: &str| guard.check_url(&Url::parse(u).unwrap());
        assert!(matches!(
            check("ftp://example.com/"),
            Err(NetError::InvalidUrl(_))
        ));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(NetError::InvalidUrl(_))
        ));
        for u in [
            "http://127.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.GOOGLE.INTERNAL./",
            "http://127.0.0.1./",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[0:0:0:0:0:ffff:7f00:1]/",
            "http://[::]/",
        ] {
            assert!(
                matches!(check(u), Err(NetError::Blocked { .. })),
                "{u} should be blocked: {:?}",
                check(u)
            );
        }
        assert!(check("https://example.com/x").is_ok());
        assert!(check("http://8.8.8.8/").is_ok());

        let open = NetGuard::new(&NetPolicy::webhook().with_allow_private(true)).unwrap();
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn filter_keeps_only_allowed_addresses() {
        let guard = NetGuard::new(&NetPolicy::webhook()).unwrap();
        let addrs = vec![
            SocketAddr::new(ip("127.0.0.1"), 80),
            SocketAddr::new(ip("93.184.216.34"), 80),
        ];
        let kept = guard.filter_addrs("mixed.example", addrs.clone()).unwrap();
        assert_eq!(kept, vec![SocketAddr::new(ip("93.184.216.34"), 80)]);
        let err = guard.filter_addrs("lo.example", addrs[..1].to_vec());
        match err {
            Err(NetError::Blocked { host, reason }) => {
                assert_eq!(host, "lo.example");
                assert!(reason.contains("127.0.0.1"), "{reason}");
            }
            other => panic!("expected Blocked, got {other:?}"),
        }
        let named = NetGuard::new(&NetPolicy::webhook().with_allowed_host("lo.example")).unwrap();
        assert_eq!(
            named
                .filter_addrs("lo.example", addrs[..1].to_vec())
                .unwrap()
                .len(),
            1
        );
    }
}
