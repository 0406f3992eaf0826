//! Research: the [`Research`] provider the escalation ladder may consult, and the address policy
//! ([`FetchPolicy`]) every network fetch on the kernel's behalf must pass.
//!
//! Owns the trait (a query in, capped documents out), the size caps, the rendering of documents
//! into a prompt block marked as reference material, and the SSRF rules as pure functions over
//! host names and IP addresses. It does no I/O: the HTTP implementation lives in the binary and
//! calls [`FetchPolicy::check_url`] before resolving and [`FetchPolicy::check_addr`] on every
//! resolved address, connecting only to checked addresses.
//!
//! What it may not touch: verdicts. Research text only shapes a prompt; whatever program the
//! model then writes is judged by the same admission pipeline as every other rung. Research runs
//! only when capability [`NET_FETCH`] is granted, and is off by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The capability that allows the kernel to fetch from the network on a request's behalf.
pub const NET_FETCH: &str = "net:fetch";

/// One fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Where it came from.
    pub url: String,
    /// Its text (markup stripped by the provider), at most [`ResearchLimits::max_doc_chars`].
    pub text: String,
}

/// How much research may bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResearchLimits {
    /// Search results considered.
    pub max_results: usize,
    /// Documents fetched.
    pub max_documents: usize,
    /// Characters kept per document.
    pub max_doc_chars: usize,
    /// Characters of all references together in a prompt.
    pub max_total_chars: usize,
    /// Bytes read from one HTTP response.
    pub max_response_bytes: u64,
}

impl Default for ResearchLimits {
    /// 4 results, 2 documents of 2500 characters, 3500 characters in all, 512 KiB per response.
    fn default() -> Self {
        ResearchLimits {
            max_results: 4,
            max_documents: 2,
            max_doc_chars: 2500,
            max_total_chars: 3500,
            max_response_bytes: 512 * 1024,
        }
    }
}

/// Why research brought nothing back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResearchError {
    /// The address policy refused a target.
    #[error("refused: {0}")]
    Refused(#[from] SsrfRefusal),
    /// The URL could not be understood.
    #[error("bad url {0:?}")]
    BadUrl(String),
    /// The fetch failed (network, status, size, timeout).
    #[error("fetch failed: {0}")]
    Fetch(String),
}

/// A research provider: a query in, a few capped documents out.
pub trait Research {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// Searches for `query` and returns at most `limits.max_documents` documents of at most
    /// `limits.max_doc_chars` characters each.
    fn search(&self, query: &str, limits: &ResearchLimits) -> Result<Vec<Document>, ResearchError>;
}

/// The prompt block made of `docs`: each document's URL and text, cut so the whole block stays
/// within `max_chars` characters of reference text, under a header that marks it as reference
/// material not to be copied. Empty when there is nothing to show.
pub fn references_block(docs: &[Document], max_chars: usize) -> String {
    let mut left = max_chars;
    let mut body = String::new();
    for d in docs {
        if left == 0 {
            break;
        }
        let text: String = d.text.trim().chars().take(left).collect();
        if text.is_empty() {
            continue;
        }
        left -= text.chars().count();
        let url: String = d.url.chars().take(200).collect();
        body.push_str(&format!("--- {url}\n{text}\n"));
    }
    if body.is_empty() {
        return String::new();
    }
    format!(
        "Reference material (for understanding only; do not copy verbatim, it may be wrong or \
         unrelated):\n{body}--- end of reference material\n"
    )
}

/// Why a fetch target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SsrfRefusal {
    /// Not `http` or `https`.
    #[error("scheme not allowed (only http and https)")]
    Scheme,
    /// No host, or one that cannot be a public name.
    #[error("malformed or empty host")]
    BadHost,
    /// A name that means this machine (`localhost`, `*.localhost`, …).
    #[error("loopback host name")]
    LoopbackName,
    /// A name that is local by construction (single label, `.local`, `.internal`, …).
    #[error("local-only host name")]
    LocalName,
    /// A cloud metadata service.
    #[error("metadata service address")]
    Metadata,
    /// Loopback (127/8, ::1).
    #[error("loopback address")]
    Loopback,
    /// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, …).
    #[error("private address")]
    Private,
    /// Carrier-grade NAT shared space (100.64/10).
    #[error("shared (carrier-grade NAT) address")]
    Shared,
    /// Link-local (169.254/16, fe80::/10).
    #[error("link-local address")]
    LinkLocal,
    /// Multicast.
    #[error("multicast address")]
    Multicast,
    /// Unspecified (0.0.0.0, ::) or "this network" (0/8).
    #[error("unspecified address")]
    Unspecified,
    /// Broadcast, documentation, benchmarking, reserved or translation ranges.
    #[error("reserved address")]
    Reserved,
}

/// The address policy of the kernel's fetches. Deny by default for every non-public target;
/// the only exception is [`FetchPolicy::allowing_loopback_port`], for tests that run a server on
/// 127.0.0.1 or ::1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchPolicy {
    loopback_port: Option<u16>,
}

impl FetchPolicy {
    /// Public targets only.
    pub fn public_only() -> FetchPolicy {
        FetchPolicy::default()
    }

    /// Additionally allows the loopback *addresses* (by IP literal, never by name) on exactly
    /// `port`. For tests that start their own local server; nothing else should use it.
    pub fn allowing_loopback_port(port: u16) -> FetchPolicy {
        FetchPolicy {
            loopback_port: Some(port),
        }
    }

    /// The allowed loopback port, if any.
    pub fn loopback_port(&self) -> Option<u16> {
        self.loopback_port
    }

    /// Checks a URL before anything is resolved: scheme, host name or literal address, port.
    /// Returns the host (lower-case, brackets removed) and the port.
    pub fn check_url(&self, url: &str) -> Result<(String, u16), SsrfRefusal> {
        let (scheme, rest) = url.split_once("://").ok_or(SsrfRefusal::Scheme)?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(SsrfRefusal::Scheme),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') || authority.contains('\\') {
            // Credentials in a URL are a classic parser-confusion vector; refuse them.
            return Err(SsrfRefusal::BadHost);
        }
        let (host, port) = split_host_port(authority).ok_or(SsrfRefusal::BadHost)?;
        let port = port.unwrap_or(default_port);
        self.check_host(&host, port)?;
        Ok((host, port))
    }

    /// Checks a host (name or IP literal) on `port` before resolution.
    pub fn check_host(&self, host: &str, port: u16) -> Result<(), SsrfRefusal> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse::<IpAddr>() {
            return self.check_addr(SocketAddr::new(ip, port));
        }
        host_name_refusal(h).map_or(Ok(()), Err)
    }

    /// Checks one resolved address; every address a name resolves to must pass before any is
    /// connected to.
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), SsrfRefusal> {
        match ip_refusal(addr.ip()) {
            None => Ok(()),
            Some(SsrfRefusal::Loopback)
                if self.loopback_port == Some(addr.port()) && is_plain_loopback(addr.ip()) =>
            {
                Ok(())
            }
            Some(r) => Err(r),
        }
    }
}

/// 127.0.0.1 or ::1 exactly (the test allowance does not extend to the rest of 127/8 or to
/// mapped forms).
fn is_plain_loopback(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

/// Splits `host[:port]` or `[v6][:port]`; lower-cases the host and drops a trailing dot.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            Some(_) => return None,
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

/// Why a host *name* (not an IP literal) is refused before resolution, if it is.
pub fn host_name_refusal(host: &str) -> Option<SsrfRefusal> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty()
        || h.len() > 253
        || !h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || h.split('.').any(str::is_empty)
    {
        return Some(SsrfRefusal::BadHost);
    }
    const LOOPBACK_NAMES: &[&str] = &[
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    ];
    if LOOPBACK_NAMES.contains(&h.as_str()) || h.ends_with(".localhost") {
        return Some(SsrfRefusal::LoopbackName);
    }
    const METADATA_NAMES: &[&str] = &["metadata", "metadata.google.internal", "instance-data"];
    if METADATA_NAMES.contains(&h.as_str()) || h.starts_with("metadata.") {
        return Some(SsrfRefusal::Metadata);
    }
    const LOCAL_SUFFIXES: &[&str] = &[
        ".local",
        ".localdomain",
        ".internal",
        ".intranet",
        ".lan",
        ".home.arpa",
        ".corp",
        ".home",
    ];
    // A single label resolves through search domains to whatever the local network says; a
    // dotted-numeric name (`127.1`, `0x7f.1`) is an address in disguise that some resolvers
    // accept.
    let numeric_like = h
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_hexdigit() || c == 'x'));
    if !h.contains('.')
        || numeric_like
        || LOCAL_SUFFIXES.iter().any(|s| h.ends_with(s))
        || h.ends_with(".in-addr.arpa")
        || h.ends_with(".ip6.arpa")
    {
        return Some(SsrfRefusal::LocalName);
    }
    None
}

/// Why an IP address is not a public fetch target, if it is not.
pub fn ip_refusal(ip: IpAddr) -> Option<SsrfRefusal> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

fn v4_refusal(ip: Ipv4Addr) -> Option<SsrfRefusal> {
    let o = ip.octets();
    let r = match o {
        [169, 254, 169, 254] | [100, 100, 100, 200] | [168, 63, 129, 16] => SsrfRefusal::Metadata,
        [0, 0, 0, 0] => SsrfRefusal::Unspecified,
        [0, ..] => SsrfRefusal::Unspecified,
        [127, ..] => SsrfRefusal::Loopback,
        [10, ..] => SsrfRefusal::Private,
        [172, b, ..] if (16..=31).contains(&b) => SsrfRefusal::Private,
        [192, 168, ..] => SsrfRefusal::Private,
        [100, b, ..] if (64..=127).contains(&b) => SsrfRefusal::Shared,
        [169, 254, ..] => SsrfRefusal::LinkLocal,
        [224..=239, ..] => SsrfRefusal::Multicast,
        [255, 255, 255, 255] => SsrfRefusal::Reserved,
        [240..=255, ..] => SsrfRefusal::Reserved,
        // IETF protocol assignments, documentation, benchmarking, 6to4 relay anycast.
        [192, 0, 0, _] | [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => {
            SsrfRefusal::Reserved
        }
        [198, 18 | 19, ..] | [192, 88, 99, _] => SsrfRefusal::Reserved,
        _ => return None,
    };
    Some(r)
}

fn v6_refusal(ip: Ipv6Addr) -> Option<SsrfRefusal> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(SsrfRefusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(SsrfRefusal::Loopback);
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, deprecated): judge the v4
    // address; an attacker must not reach 127.0.0.1 through ::ffff:127.0.0.1.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return v4_refusal(embedded(s[6], s[7]));
    }
    if s[..6] == [0; 6] {
        return Some(v4_refusal(embedded(s[6], s[7])).unwrap_or(SsrfRefusal::Reserved));
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2..6] == [0; 4] {
            return v4_refusal(embedded(s[6], s[7]));
        }
        return Some(SsrfRefusal::Reserved);
    }
    // 6to4 (2002::/16) carries a v4 address in bits 16..48.
    if s[0] == 0x2002 {
        return v4_refusal(embedded(s[1], s[2]));
    }
    let r = match s[0] {
        0xfd00 if s[1..4] == [0x0ec2, 0, 0] => SsrfRefusal::Metadata,
        x if x & 0xfe00 == 0xfc00 => SsrfRefusal::Private,
        x if x & 0xffc0 == 0xfe80 => SsrfRefusal::LinkLocal,
        // Site-local (deprecated).
        x if x & 0xffc0 == 0xfec0 => SsrfRefusal::Private,
        x if x & 0xff00 == 0xff00 => SsrfRefusal::Multicast,
        // Teredo (2001::/32) hides a v4 address; documentation (2001:db8::/32); ORCHID and
        // benchmarking (2001:2::/48, 2001:10::/28, 2001:20::/28).
        0x2001 if s[1] == 0 || s[1] == 0x0db8 || s[1] == 2 || (0x10..=0x2f).contains(&s[1]) => {
            SsrfRefusal::Reserved
        }
        // Discard-only 100::/64.
        0x0100 if s[1..4] == [0; 3] => SsrfRefusal::Reserved,
        // Documentation 3fff::/20.
        x if x & 0xfff0 == 0x3ff0 => SsrfRefusal::Reserved,
        // Anything outside global unicast 2000::/3 is reserved.
        x if x & 0xe000 != 0x2000 => SsrfRefusal::Reserved,
        _ => return None,
    };
    Some(r)
}
