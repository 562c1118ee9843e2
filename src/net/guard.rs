//! The guard's rules and the address check: which hosts and addresses an
//! outbound request may reach. Pure functions, no I/O, so every rule is
//! unit-tested here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Settings of URL sources, from the master's flags.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `--allow-url-source`.
    pub enabled: bool,
    /// `--allowed-source-hosts`: exact names, or `*.example.com` for any
    /// subdomain. Empty: any host (whose addresses pass the check).
    pub allowed_hosts: Vec<String>,
    /// `--allow-private-sources`: no address check at all.
    pub allow_private: bool,
    /// `--allowed-private-networks`: networks exempt from the address check.
    pub private_networks: Vec<Network>,
    /// `--source-timeout`: the whole fetch, redirects included.
    pub timeout: Duration,
    /// `--source-max-redirects`.
    pub max_redirects: u32,
    /// The byte cap (`--max-body`).
    pub max_bytes: u64,
    /// TLS settings for `https://` (the built-in roots plus `--source-ca`);
    /// `None` refuses https.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Idle connections to sources, shared by every clone of this config.
    pub conns: std::sync::Arc<super::conns::Conns>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            enabled: false,
            allowed_hosts: Vec::new(),
            allow_private: false,
            private_networks: Vec::new(),
            timeout: Duration::from_secs(10),
            max_redirects: 3,
            max_bytes: 32 << 20,
            tls: None,
            conns: Default::default(),
        }
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr[/prefix]`.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid network {s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid network {s:?}: prefix must be 0-{max}"))?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The IPv4 address an IPv6 address stands for (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:ab:cd::`),
/// so that every spelling of a private IPv4 address is checked as one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// `ip` with an embedded IPv4 address replaced by that address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address may not be fetched from by default, or `None` for a
/// public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private (RFC 1918)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if a == 100 && (b & 0xC0) == 64 {
                Some("carrier-grade NAT (100.64.0.0/10)")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else if a == 0 {
                Some("unspecified (0.0.0.0/8)")
            } else if a >= 240
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xFE) == 18)
                || v4.is_documentation()
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (first & 0xFE00) == 0xFC00 {
                Some("unique local (fc00::/7)")
            } else if (first & 0xFFC0) == 0xFE80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("reserved (documentation)")
            } else if (first & 0xFFC0) == 0xFEC0 {
                Some("site-local (fec0::/10)")
            } else if first == 0x0064 && v6.segments()[1] == 0xff9b && v6.segments()[2] == 0x0001 {
                // RFC 8215: a NAT64 prefix of the local network; the
                // address it translates to is private by definition.
                Some("local-use NAT64 (64:ff9b:1::/48)")
            } else if first == 0x2001 && v6.segments()[1] == 0x0000 {
                // Teredo tunnels to an IPv4 relay and client that the
                // address embeds (one of them obfuscated): refused whole
                // rather than trusting either.
                Some("Teredo (2001::/32)")
            } else {
                None
            }
        }
    }
}

/// Whether the configuration lets us connect to `ip`.
pub(super) fn address_allowed(cfg: &SourceConfig, ip: IpAddr) -> Result<(), String> {
    if cfg.allow_private || cfg.private_networks.iter().any(|n| n.contains(ip)) {
        return Ok(());
    }
    match forbidden_reason(ip) {
        Some(reason) => Err(format!(
            "{ip} is a {reason} address; sources must be public (see --allow-private-sources)"
        )),
        None => Ok(()),
    }
}

pub(super) fn host_allowed(cfg: &SourceConfig, host: &str) -> bool {
    if cfg.allowed_hosts.is_empty() {
        return true;
    }
    cfg.allowed_hosts
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == pattern,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_guard_refuses_every_non_public_form() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::8.8.8.8",
            "fec0::1",
            "feff::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden_reason(ip(bad)).is_some(), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
            "2001:1::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(forbidden_reason(ip(good)), None, "{good} is public");
        }
    }

    #[test]
    fn allow_lists() {
        let mut cfg = SourceConfig::default();
        assert!(address_allowed(&cfg, ip("127.0.0.1")).is_err());
        cfg.private_networks = vec![Network::parse("127.0.0.1/32").expect("net")];
        assert!(address_allowed(&cfg, ip("127.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("::ffff:127.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("127.0.0.2")).is_err());
        cfg.private_networks = vec![Network::parse("10.0.0.0/8").expect("net")];
        assert!(address_allowed(&cfg, ip("10.200.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("11.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("192.168.0.1")).is_err());
        cfg.allow_private = true;
        assert!(address_allowed(&cfg, ip("192.168.0.1")).is_ok());
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nope").is_err());

        cfg.allowed_hosts = vec!["img.example.com".into(), "*.cdn.example".into()];
        assert!(host_allowed(&cfg, "img.example.com"));
        assert!(host_allowed(&cfg, "a.cdn.example"));
        assert!(!host_allowed(&cfg, "cdn.example"));
        assert!(!host_allowed(&cfg, "evilcdn.example"));
        assert!(!host_allowed(&cfg, "example.com"));
    }
}
